// The dashboard's figures: today or the last 7/30 days, by outcome and by day.
import { lazy, Suspense, useState } from 'react';
import { useQuery } from '@tanstack/react-query';
import { api, data, type Schemas } from '../api/client';
import { ErrorNote, Loading } from './States';

// The chart library is most of the dashboard's weight: it loads after the figures.
const DayChart = lazy(() => import('./DayChart'));

const WINDOWS = [
  [1, 'Today'],
  [7, '7 days'],
  [30, '30 days'],
] as const;

function sum(m: Record<string, number> | undefined, keys?: string[]): number {
  return Object.entries(m ?? {})
    .filter(([k]) => !keys || keys.includes(k))
    .reduce((n, [, v]) => n + v, 0);
}

function percent(rate: number | null | undefined): string {
  return rate == null ? '—' : `${Math.round(rate * 1000) / 10}%`;
}

/** Per day: messages sent, delivered, failed, and calls; the chart and its table. */
export function perDay(s: Schemas['StatsView']) {
  return s.outbound.by_day.map((d, i) => ({
    day: d.day.slice(5),
    delivered: sum(d.counts, ['delivered', 'read']),
    failed: sum(d.counts, ['failed', 'undelivered']),
    other: sum(d.counts) - sum(d.counts, ['delivered', 'read', 'failed', 'undelivered']),
    calls: sum(s.calls.by_day[i]?.counts),
  }));
}

export function Figures() {
  const [days, setDays] = useState<1 | 7 | 30>(7);
  const stats = useQuery({
    queryKey: ['stats', days],
    queryFn: () => data(api.GET('/api/stats', { params: { query: { days } } })),
    refetchInterval: 30_000,
  });
  const s = stats.data;
  const rows = s ? perDay(s) : [];
  return (
    <div className="panel">
      <div className="title-row">
        <h2>Activity</h2>
        <div className="tabs" role="group" aria-label="Period">
          {WINDOWS.map(([d, label]) => (
            <button key={d} type="button" aria-pressed={days === d} onClick={() => setDays(d)}>
              {label}
            </button>
          ))}
        </div>
      </div>
      {stats.isPending ? (
        <Loading />
      ) : stats.error ? (
        <ErrorNote error={stats.error} retry={() => stats.refetch()} />
      ) : (
        s && (
          <>
            <dl className="figures">
              <div>
                <dt>Messages sent</dt>
                <dd>{(sum(s.outbound.total) + sum(s.campaign_items, ['sent', 'delivered', 'read', 'undelivered', 'failed'])).toLocaleString()}</dd>
              </div>
              <div>
                <dt>Delivery rate</dt>
                <dd>{percent(s.delivery_rate)}</dd>
              </div>
              <div>
                <dt>Messages received</dt>
                <dd>{sum(s.inbound.total).toLocaleString()}</dd>
              </div>
              <div>
                <dt>Calls</dt>
                <dd>{sum(s.calls.total).toLocaleString()}</dd>
              </div>
              <div>
                <dt>Answer rate</dt>
                <dd>{percent(s.answer_rate)}</dd>
              </div>
            </dl>
            {days > 1 && (
              <div className="chart" aria-hidden="true">
                <Suspense fallback={<Loading what="Drawing the chart" />}>
                  <DayChart rows={rows} />
                </Suspense>
              </div>
            )}
            <details>
              <summary>By day and outcome</summary>
              <table>
                <caption>Messages (single sends and replies) and calls by day, UTC</caption>
                <thead>
                  <tr>
                    <th scope="col">Day</th>
                    <th scope="col" className="num">Delivered</th>
                    <th scope="col" className="num">Not yet delivered</th>
                    <th scope="col" className="num">Failed</th>
                    <th scope="col" className="num">Calls</th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((r) => (
                    <tr key={r.day}>
                      <th scope="row">{r.day}</th>
                      <td className="num">{r.delivered}</td>
                      <td className="num">{r.other}</td>
                      <td className="num">{r.failed}</td>
                      <td className="num">{r.calls}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              <p className="muted small">
                Campaign items of campaigns started in this period:{' '}
                {Object.entries(s.campaign_items)
                  .map(([k, v]) => `${k.replace(/_/g, ' ')} ${v.toLocaleString()}`)
                  .join(', ') || 'none'}
                . Calls by outcome:{' '}
                {Object.entries(s.calls.total)
                  .map(([k, v]) => `${k.replace(/_/g, ' ')} ${v.toLocaleString()}`)
                  .join(', ') || 'none'}
                .
              </p>
            </details>
          </>
        )
      )}
    </div>
  );
}
