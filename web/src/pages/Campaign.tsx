import { useEffect, useState, type FormEvent } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useParams } from 'react-router';
import { api, data } from '../api/client';
import { Badge, ErrorNote, Loading, when } from '../components/States';
import { ProgressBar } from '../components/ProgressBar';
import { FINAL, OPEN } from '../lib/progress';
import { ended, useLiveProgress } from '../lib/live';
import { CampaignItems } from './CampaignItems';
import { useCan } from '../lib/role';

type Action = 'start' | 'pause' | 'resume' | 'cancel';

export default function Campaign() {
  const { id = '' } = useParams();
  const client = useQueryClient();
  const campaign = useQuery({
    queryKey: ['campaign', id],
    queryFn: () => data(api.GET('/api/campaigns/{id}', { params: { path: { id } } })),
    refetchInterval: (q) => (ended(q.state.data?.status) ? false : 10_000),
  });
  const settings = useQuery({ queryKey: ['settings'], queryFn: () => data(api.GET('/api/settings')), staleTime: 300_000 });
  const status = campaign.data?.status;
  const running = status !== undefined && status !== 'draft' && !ended(status);
  // While it runs, the api streams its progress; otherwise one read (keyed by the status, so
  // the final counts are read once it has ended).
  const { progress: streamed, lost } = useLiveProgress(id, running);
  const read = useQuery({
    queryKey: ['progress', id, status],
    queryFn: () => data(api.GET('/api/campaigns/{id}/progress', { params: { path: { id } } })),
    enabled: Boolean(campaign.data),
    // Without the stream, poll: a page must never show a frozen figure as live.
    refetchInterval: running && lost ? 5_000 : false,
  });
  const progress = { data: lost ? (read.data ?? streamed) : (streamed ?? read.data), error: read.error };
  // The stream sees the campaign end (or pause) before the campaign query does.
  const streamedStatus = streamed?.status;
  const streamedPaused = streamed?.paused;
  useEffect(() => {
    if (streamedStatus !== undefined) client.invalidateQueries({ queryKey: ['campaign', id] });
  }, [streamedStatus, streamedPaused, client, id]);
  const refresh = () => {
    client.invalidateQueries({ queryKey: ['campaign', id] });
    client.invalidateQueries({ queryKey: ['progress', id] });
    client.invalidateQueries({ queryKey: ['campaigns'] });
  };
  const act = useMutation({
    mutationFn: (a: Action) => {
      const params = { params: { path: { id } } };
      switch (a) {
        case 'start':
          return data(api.POST('/api/campaigns/{id}/start', params));
        case 'pause':
          return data(api.POST('/api/campaigns/{id}/pause', params));
        case 'resume':
          return data(api.POST('/api/campaigns/{id}/resume', params));
        case 'cancel':
          return data(api.POST('/api/campaigns/{id}/cancel', params));
      }
    },
    onSettled: refresh,
  });
  const canManage = useCan('manager');
  const [rate, setRate] = useState('');
  const changeRate = useMutation({
    mutationFn: (r: number) =>
      data(api.PUT('/api/campaigns/{id}/rate', { params: { path: { id } }, body: { rate_per_second: r } })),
    onSuccess: () => setRate(''),
    onSettled: refresh,
  });
  if (campaign.isPending) return <Loading />;
  if (campaign.error) return <ErrorNote error={campaign.error} retry={() => campaign.refetch()} />;
  const c = campaign.data;
  const paused = progress.data?.paused ?? c.status === 'paused';
  const active = ['running', 'starting', 'paused'].includes(c.status);
  const counts = progress.data?.counts ?? {};
  const statuses = [...OPEN, ...FINAL].filter((s) => (counts[s] ?? 0) > 0);
  const onRate = (e: FormEvent) => {
    e.preventDefault();
    const r = Number(rate);
    if (rate.trim() !== '' && Number.isFinite(r)) changeRate.mutate(r);
  };
  return (
    <section>
      <div className="title-row">
        <h1>{c.name}</h1>
        <Badge status={paused && active ? 'paused' : c.status} />
      </div>
      {canManage && (
        <div className="actions">
          {c.status === 'draft' && (
            <button type="button" onClick={() => act.mutate('start')} disabled={act.isPending}>
              Start
            </button>
          )}
          {active && !paused && (
            <button type="button" className="secondary" onClick={() => act.mutate('pause')} disabled={act.isPending}>
              Pause
            </button>
          )}
          {active && paused && (
            <button type="button" onClick={() => act.mutate('resume')} disabled={act.isPending}>
              Resume
            </button>
          )}
          {active && (
            <button
              type="button"
              className="danger"
              disabled={act.isPending}
              onClick={() => window.confirm('Cancel the campaign? Nothing more will be sent.') && act.mutate('cancel')}
            >
              Cancel campaign
            </button>
          )}
        </div>
      )}
      {act.error && <ErrorNote error={act.error} />}
      {progress.data && <ProgressBar progress={progress.data} />}
      {running && lost && <p className="muted small">Live updates are paused; refreshing every 5 s.</p>}
      {progress.error && <ErrorNote error={progress.error} />}
      <div className="grid">
        <div className="panel">
          <h2>Items by status</h2>
          {statuses.length === 0 ? (
            <p className="muted">{c.status === 'draft' ? 'Not started yet.' : 'No items yet.'}</p>
          ) : (
            <table>
              <tbody>
                {statuses.map((s) => (
                  <tr key={s}>
                    <th scope="row">
                      <Badge status={s} />
                    </th>
                    <td className="num" data-status={s}>
                      {(counts[s] ?? 0).toLocaleString()}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </div>
        <div className="panel">
          <h2>Settings</h2>
          <dl className="facts">
            <dt>Channel</dt>
            <dd>{c.channel}</dd>
            <dt>Sender</dt>
            <dd>{c.from ?? c.messaging_service_sid ?? 'default'}</dd>
            <dt>Rate</dt>
            <dd>{c.rate_per_second === 0 ? 'as fast as allowed' : `${c.rate_per_second}/s`}</dd>
            <dt>Attempts</dt>
            <dd>{c.max_attempts}</dd>
            {c.window_start && (
              <>
                <dt>Window</dt>
                <dd>
                  {c.window_start}–{c.window_end} local time
                </dd>
              </>
            )}
            <dt>Created</dt>
            <dd>{when(c.created_at)}</dd>
            <dt>Workflow</dt>
            <dd>
              <code>{c.workflow_id}</code>
              {settings.data?.temporal_ui_url && (
                <>
                  {' '}
                  <a
                    href={`${settings.data.temporal_ui_url}/namespaces/${encodeURIComponent(settings.data.temporal_namespace)}/workflows/${encodeURIComponent(c.workflow_id)}`}
                  >
                    Open in the Temporal UI
                  </a>
                </>
              )}
            </dd>
          </dl>
          {c.template && (
            <>
              <h3>Message</h3>
              <p className="bubble">{c.template}</p>
            </>
          )}
          {active && canManage && (
            <form className="inline" onSubmit={onRate}>
              <label>
                New rate per second
                <input value={rate} onChange={(e) => setRate(e.target.value)} inputMode="decimal" />
              </label>
              <button type="submit" disabled={changeRate.isPending || rate.trim() === ''}>
                Change rate
              </button>
            </form>
          )}
          {changeRate.error && <ErrorNote error={changeRate.error} />}
        </div>
      </div>
      {c.status !== 'draft' && (
        <CampaignItems campaignId={id} statuses={statuses} status={c.status} running={running} />
      )}
    </section>
  );
}
