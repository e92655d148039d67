import { useInfiniteQuery } from '@tanstack/react-query';
import { Link } from 'react-router';
import { api, data } from '../api/client';
import { Badge, Empty, ErrorNote, Loading, when } from '../components/States';
import { useCan } from '../lib/role';

export default function Campaigns() {
  const PAGE = 100;
  const campaigns = useInfiniteQuery({
    queryKey: ['campaigns', 'pages'],
    queryFn: ({ pageParam }) =>
      data(
        api.GET('/api/campaigns', {
          params: {
            query: { limit: PAGE, ...(pageParam ? { before_created_at: pageParam.at, before_id: pageParam.id } : {}) },
          },
        }),
      ),
    initialPageParam: null as { at: string; id: string } | null,
    // A full page may have more after it: the cursor is its last campaign.
    getNextPageParam: (last) => {
      const tail = last[last.length - 1];
      return last.length === PAGE && tail ? { at: tail.created_at, id: tail.id } : undefined;
    },
    refetchInterval: 5_000,
  });
  const rows = campaigns.data?.pages.flat() ?? [];
  const canManage = useCan('manager');
  return (
    <section>
      <div className="title-row">
        <h1>Campaigns</h1>
        {canManage && (
          <Link className="button" to="/campaigns/new">
            New campaign
          </Link>
        )}
      </div>
      {campaigns.isPending ? (
        <Loading />
      ) : campaigns.error ? (
        <ErrorNote error={campaigns.error} retry={() => campaigns.refetch()} />
      ) : rows.length === 0 ? (
        <Empty>
          No campaigns yet.{canManage && <> <Link to="/campaigns/new">Create the first one</Link>.</>}
        </Empty>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Channel</th>
              <th scope="col">Status</th>
              <th scope="col" className="num">
                Contacts
              </th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((c) => (
              <tr key={c.id}>
                <td>
                  <Link to={`/campaigns/${c.id}`}>{c.name}</Link>
                </td>
                <td>{c.channel}</td>
                <td>
                  <Badge status={c.status} />
                </td>
                <td className="num">{c.total_items.toLocaleString()}</td>
                <td>{when(c.created_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {campaigns.hasNextPage && (
        <button
          type="button"
          className="secondary"
          onClick={() => campaigns.fetchNextPage()}
          disabled={campaigns.isFetchingNextPage}
        >
          Older campaigns
        </button>
      )}
    </section>
  );
}
