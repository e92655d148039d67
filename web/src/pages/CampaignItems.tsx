// A campaign's items: filtered by status and a search, paged by cursor, each with its
// attempts and Twilio's error codes in words.
import { Fragment, useDeferredValue, useState } from 'react';
import { useInfiniteQuery, useQuery } from '@tanstack/react-query';
import { api, data } from '../api/client';
import { Badge, Empty, ErrorNote, Loading, when } from '../components/States';
import { twilioError, twilioErrorUrl } from '../lib/twilioErrors';

const STATUSES = ['pending', 'sending', 'sent', 'delivered', 'undelivered', 'failed', 'skipped', 'canceled'];

function ErrorText({ code }: { code: number | null | undefined }) {
  if (code == null) return null;
  return (
    <span className="small">
      <a href={twilioErrorUrl(code)}>{code}</a>: {twilioError(code)}
    </span>
  );
}

function Attempts({ campaignId, itemId }: { campaignId: string; itemId: string }) {
  const detail = useQuery({
    queryKey: ['campaign-item', campaignId, itemId],
    queryFn: () =>
      data(api.GET('/api/campaigns/{id}/items/{item_id}', { params: { path: { id: campaignId, item_id: itemId } } })),
  });
  if (detail.isPending) return <Loading what="Loading the attempts" />;
  if (detail.error) return <ErrorNote error={detail.error} retry={() => detail.refetch()} />;
  const { item, attempts } = detail.data;
  return (
    <div className="attempts">
      {item.reason && <p className="small">Reason: {item.reason}</p>}
      {attempts.length === 0 ? (
        <p className="muted small">No attempt recorded yet.</p>
      ) : (
        <ol className="plain">
          {attempts.map((a) => (
            <li key={a.attempt} className="small">
              Attempt {a.attempt}, {when(a.at)}: <Badge status={a.outcome} /> <ErrorText code={a.error_code} />
            </li>
          ))}
        </ol>
      )}
      {item.message_sid && <p className="muted small">Message {item.message_sid}</p>}
    </div>
  );
}

export function CampaignItems({
  campaignId,
  statuses,
  status: campaignStatus,
  running,
}: {
  campaignId: string;
  statuses: string[];
  status: string;
  running: boolean;
}) {
  const [status, setStatus] = useState('');
  const [search, setSearch] = useState('');
  const deferred = useDeferredValue(search.trim());
  const [open, setOpen] = useState<string | null>(null);
  const items = useInfiniteQuery({
    // The campaign's status in the key: its items are read again when it moves on (the
    // final statuses once it has ended).
    queryKey: ['campaign-items', campaignId, campaignStatus, status, deferred],
    queryFn: ({ pageParam }) =>
      data(
        api.GET('/api/campaigns/{id}/items', {
          params: {
            path: { id: campaignId },
            query: { status: status || undefined, search: deferred || undefined, cursor: pageParam || undefined, limit: 50 },
          },
        }),
      ),
    initialPageParam: '',
    getNextPageParam: (last) => last.next_cursor || undefined,
    // Items are written as the campaign starts and change as it sends: a slow refresh while it
    // runs (the counts above are live).
    refetchInterval: running ? 5_000 : false,
  });
  const rows = items.data?.pages.flatMap((p) => p.items) ?? [];
  const options = [...new Set([...STATUSES, ...statuses])];
  return (
    <div className="panel">
      <h2>Items</h2>
      <div className="inline">
        <label>
          Status
          <select value={status} onChange={(e) => setStatus(e.target.value)}>
            <option value="">Any</option>
            {options.map((s) => (
              <option key={s} value={s}>
                {s.replace(/_/g, ' ')}
              </option>
            ))}
          </select>
        </label>
        <label>
          Search items
          <input
            value={search}
            maxLength={100}
            onChange={(e) => setSearch(e.target.value)}
            placeholder="name or part of the number"
          />
        </label>
      </div>
      {items.isPending ? (
        <Loading what="Loading the items" />
      ) : items.error ? (
        <ErrorNote error={items.error} retry={() => items.refetch()} />
      ) : rows.length === 0 && !items.hasNextPage ? (
        <Empty>No items{status || deferred ? ' match' : ' yet'}.</Empty>
      ) : (
        <div className="scroll-x">
          <table aria-label="Campaign items">
            <thead>
              <tr>
                <th scope="col">Number</th>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col">Error</th>
                <th scope="col" className="num">
                  Attempts
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.map((i) => (
                <Fragment key={i.id}>
                  <tr>
                    <td className="phone">{i.phone}</td>
                    <td>{i.name ?? '—'}</td>
                    <td>
                      <Badge status={i.status} />
                    </td>
                    <td>
                      <ErrorText code={i.error_code} />
                    </td>
                    <td className="num">
                      <button
                        type="button"
                        className="link"
                        aria-expanded={open === i.id}
                        aria-label={`Attempts of ${i.phone}`}
                        onClick={() => setOpen(open === i.id ? null : i.id)}
                      >
                        {i.attempts}
                      </button>
                    </td>
                  </tr>
                  {open === i.id && (
                    <tr>
                      <td colSpan={5}>
                        <Attempts campaignId={campaignId} itemId={i.id} />
                      </td>
                    </tr>
                  )}
                </Fragment>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {items.hasNextPage && (
        <button
          type="button"
          className="secondary"
          onClick={() => items.fetchNextPage()}
          disabled={items.isFetchingNextPage}
        >
          {rows.length === 0 ? 'Look further' : 'More items'}
        </button>
      )}
    </div>
  );
}
