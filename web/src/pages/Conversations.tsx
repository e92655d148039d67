import { useInfiniteQuery } from '@tanstack/react-query';
import { Link, useSearchParams } from 'react-router';
import { api, data } from '../api/client';
import { Badge, Empty, ErrorNote, Loading, when } from '../components/States';

export default function Conversations() {
  const [params, setParams] = useSearchParams();
  const waiting = params.get('waiting') === '1';
  const PAGE = 100;
  const list = useInfiniteQuery({
    queryKey: ['conversations', 'pages', waiting ? 'needs_human' : 'all'],
    queryFn: ({ pageParam }) =>
      data(
        api.GET('/api/conversations', {
          params: {
            query: {
              limit: PAGE,
              ...(waiting ? { needs_human: true } : {}),
              ...(pageParam ? { before_updated_at: pageParam.at, before_id: pageParam.id } : {}),
            },
          },
        }),
      ),
    initialPageParam: null as { at: string; id: string } | null,
    // A full page may have more after it: the cursor is its last conversation.
    getNextPageParam: (last) => {
      const tail = last[last.length - 1];
      return last.length === PAGE && tail ? { at: tail.updated_at, id: tail.id } : undefined;
    },
    refetchInterval: 30_000,
  });
  const rows = list.data?.pages.flat() ?? [];
  return (
    <section>
      <h1>Conversations</h1>
      <div className="tabs" role="group" aria-label="Show">
        <button type="button" aria-pressed={!waiting} onClick={() => setParams({})}>
          All
        </button>
        <button type="button" aria-pressed={waiting} onClick={() => setParams({ waiting: '1' })}>
          Waiting for a person
        </button>
      </div>
      {list.isPending ? (
        <Loading />
      ) : list.error ? (
        <ErrorNote error={list.error} retry={() => list.refetch()} />
      ) : rows.length === 0 ? (
        <Empty>{waiting ? 'Nobody is waiting for a person.' : 'No conversations yet.'}</Empty>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">With</th>
              <th scope="col">Channel</th>
              <th scope="col">Status</th>
              <th scope="col" className="num">
                Turns
              </th>
              <th scope="col">Disposition</th>
              <th scope="col">Last change</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((c) => (
              <tr key={c.id}>
                <td>
                  <Link to={`/conversations/${c.id}`}>{c.theirs}</Link>
                </td>
                <td>{c.channel}</td>
                <td>
                  <Badge status={c.needs_human ? 'needs_human' : c.status} />
                </td>
                <td className="num">{c.turns}</td>
                <td>{c.disposition ?? '—'}</td>
                <td>{when(c.updated_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {list.hasNextPage && (
        <button type="button" className="secondary" onClick={() => list.fetchNextPage()} disabled={list.isFetchingNextPage}>
          Older conversations
        </button>
      )}
    </section>
  );
}
