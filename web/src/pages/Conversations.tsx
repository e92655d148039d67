import { useQuery } from '@tanstack/react-query';
import { Link, useSearchParams } from 'react-router';
import { api, data } from '../api/client';
import { Badge, Empty, ErrorNote, Loading, when } from '../components/States';

export default function Conversations() {
  const [params, setParams] = useSearchParams();
  const waiting = params.get('waiting') === '1';
  const list = useQuery({
    queryKey: ['conversations', waiting ? 'needs_human' : 'all'],
    queryFn: () =>
      data(api.GET('/api/conversations', { params: { query: { limit: 200, ...(waiting ? { needs_human: true } : {}) } } })),
    refetchInterval: 30_000,
  });
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
      ) : list.data.length === 0 ? (
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
            {list.data.map((c) => (
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
    </section>
  );
}
