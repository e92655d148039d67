import { useQuery } from '@tanstack/react-query';
import { Link } from 'react-router';
import { useCan } from '../lib/role';
import { api, data } from '../api/client';
import { Badge, Empty, ErrorNote, Loading, when } from '../components/States';
import { ProgressBar } from '../components/ProgressBar';
import { useLiveProgress } from '../lib/live';
import { Figures } from '../components/Figures';

function ActiveCampaign({ id, name }: { id: string; name: string }) {
  const { progress } = useLiveProgress(id, true);
  return (
    <li className="card">
      <Link to={`/campaigns/${id}`}>{name}</Link>
      {progress ? <ProgressBar progress={progress} /> : <Loading what="Reading progress" />}
    </li>
  );
}

export default function Dashboard() {
  const campaigns = useQuery({
    queryKey: ['campaigns'],
    queryFn: () => data(api.GET('/api/campaigns')),
    refetchInterval: 5_000,
  });
  const waiting = useQuery({
    queryKey: ['conversations', 'needs_human'],
    queryFn: () => data(api.GET('/api/conversations', { params: { query: { needs_human: true, limit: 20 } } })),
    refetchInterval: 30_000,
  });
  const calls = useQuery({
    queryKey: ['calls', 'recent'],
    queryFn: () => data(api.GET('/api/calls', { params: { query: { page_size: 8 } } })),
    refetchInterval: 30_000,
  });
  const canManage = useCan('manager');
  const active = (campaigns.data ?? []).filter((c) => ['running', 'starting', 'paused'].includes(c.status));
  return (
    <section>
      <h1>Dashboard</h1>
      <Figures />
      <div className="grid">
        <div className="panel">
          <h2>Active campaigns</h2>
          {campaigns.isPending ? (
            <Loading />
          ) : campaigns.error ? (
            <ErrorNote error={campaigns.error} retry={() => campaigns.refetch()} />
          ) : active.length === 0 ? (
            <Empty>
              No campaign is running.{canManage && <> <Link to="/campaigns/new">Create one</Link>.</>}
            </Empty>
          ) : (
            <ul className="plain">
              {active.map((c) => (
                <ActiveCampaign key={c.id} id={c.id} name={c.name} />
              ))}
            </ul>
          )}
        </div>
        <div className="panel">
          <h2>Waiting for a person</h2>
          {waiting.isPending ? (
            <Loading />
          ) : waiting.error ? (
            <ErrorNote error={waiting.error} retry={() => waiting.refetch()} />
          ) : waiting.data.length === 0 ? (
            <Empty>No conversation is waiting for a person.</Empty>
          ) : (
            <ul className="plain">
              {waiting.data.map((c) => (
                <li key={c.id}>
                  <Link to={`/conversations/${c.id}`}>{c.theirs}</Link> <span className="muted">{c.channel}</span>{' '}
                  <span className="muted">{when(c.updated_at)}</span>
                </li>
              ))}
            </ul>
          )}
        </div>
        <div className="panel">
          <h2>Recent calls</h2>
          {calls.isPending ? (
            <Loading />
          ) : calls.error ? (
            <ErrorNote error={calls.error} retry={() => calls.refetch()} />
          ) : calls.data.calls.length === 0 ? (
            <Empty>No calls yet.</Empty>
          ) : (
            <ul className="plain">
              {calls.data.calls.map((c) => (
                <li key={c.id}>
                  <Link to={`/calls/${c.call_id}`}>{c.direction === 'inbound' ? c.from : c.to}</Link>{' '}
                  <Badge status={c.outcome ?? c.status} /> <span className="muted">{when(c.started_at)}</span>
                </li>
              ))}
            </ul>
          )}
        </div>
      </div>
    </section>
  );
}
