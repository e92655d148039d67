import { useQuery } from '@tanstack/react-query';
import { Link } from 'react-router';
import { api, data } from '../api/client';
import { Badge, Empty, ErrorNote, Loading, when } from '../components/States';

export default function Campaigns() {
  const campaigns = useQuery({
    queryKey: ['campaigns'],
    queryFn: () => data(api.GET('/api/campaigns')),
    refetchInterval: 5_000,
  });
  return (
    <section>
      <div className="title-row">
        <h1>Campaigns</h1>
        <Link className="button" to="/campaigns/new">
          New campaign
        </Link>
      </div>
      {campaigns.isPending ? (
        <Loading />
      ) : campaigns.error ? (
        <ErrorNote error={campaigns.error} retry={() => campaigns.refetch()} />
      ) : campaigns.data.length === 0 ? (
        <Empty>
          No campaigns yet. <Link to="/campaigns/new">Create the first one</Link>.
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
            {campaigns.data.map((c) => (
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
    </section>
  );
}
