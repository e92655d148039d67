// One contact: their variables, opt-out state and history (messages, calls, campaigns).
import { useQuery } from '@tanstack/react-query';
import { Link, useParams } from 'react-router';
import { api, data } from '../api/client';
import { Badge, Empty, ErrorNote, Loading, when } from '../components/States';
import { twilioError } from '../lib/twilioErrors';

function History({ listId, contactId }: { listId: string; contactId: string }) {
  const history = useQuery({
    queryKey: ['contact-history', listId, contactId],
    queryFn: () =>
      data(
        api.GET('/api/contact-lists/{id}/contacts/{contact_id}/history', {
          params: { path: { id: listId, contact_id: contactId } },
        }),
      ),
  });
  if (history.isPending) return <Loading what="Loading the history" />;
  if (history.error) return <ErrorNote error={history.error} retry={() => history.refetch()} />;
  const { opt_out, messages, calls, campaigns } = history.data;
  return (
    <>
      <div className="panel">
        <h2>Opt-out</h2>
        <p>
          {opt_out?.opted_out ? (
            <>
              <Badge status="opted_out" /> Opted out of SMS, WhatsApp and campaign calls
              {opt_out.keyword && ` (${opt_out.keyword}`}
              {opt_out.channel && ` by ${opt_out.channel}`}
              {opt_out.keyword && ')'} since {when(opt_out.at)}.
            </>
          ) : opt_out ? (
            <>
              <Badge status="subscribed" /> Subscribed on every channel again ({opt_out.keyword ?? 'START'}, {when(opt_out.at)}).
            </>
          ) : (
            <>
              <Badge status="subscribed" /> Not opted out on any channel.
            </>
          )}
        </p>
      </div>
      <div className="panel">
        <h2>Campaigns</h2>
        {campaigns.length === 0 ? (
          <Empty>Not in any campaign of this list yet.</Empty>
        ) : (
          <div className="scroll-x">
            <table aria-label="Campaigns of this contact">
              <thead>
                <tr>
                  <th scope="col">Campaign</th>
                  <th scope="col">Channel</th>
                  <th scope="col">Status</th>
                  <th scope="col">Changed</th>
                </tr>
              </thead>
              <tbody>
                {campaigns.map((c) => (
                  <tr key={c.campaign_id}>
                    <td>
                      <Link to={`/campaigns/${c.campaign_id}`}>{c.name}</Link>
                    </td>
                    <td>{c.channel}</td>
                    <td>
                      <Badge status={c.status} />
                      {c.error_code != null && <span className="small"> {twilioError(c.error_code)}</span>}
                    </td>
                    <td>{when(c.updated_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </div>
      <div className="panel">
        <h2>Messages</h2>
        {messages.length === 0 ? (
          <Empty>No messages with this number.</Empty>
        ) : (
          <ol className="plain">
            {messages.map((m) => (
              <li key={m.id} className={`msg ${m.direction}`}>
                <p className="bubble">{m.body}</p>
                <p className="muted small">
                  {m.direction} · {when(m.created_at)} · <Badge status={m.status} />
                  {m.error_code != null && <> · {twilioError(m.error_code)}</>}
                </p>
              </li>
            ))}
          </ol>
        )}
      </div>
      <div className="panel">
        <h2>Calls</h2>
        {calls.length === 0 ? (
          <Empty>No calls with this number.</Empty>
        ) : (
          <ul className="plain">
            {calls.map((c) => (
              <li key={c.id}>
                <Link to={`/calls/${c.call_id}`}>
                  {c.direction} call, {when(c.started_at)}
                </Link>{' '}
                <Badge status={c.outcome ?? c.status} />
                {c.duration_secs != null && <span className="muted small"> {c.duration_secs} s</span>}
              </li>
            ))}
          </ul>
        )}
      </div>
    </>
  );
}

export default function Contact() {
  const { id = '', contactId = '' } = useParams();
  const contact = useQuery({
    queryKey: ['contact', id, contactId],
    queryFn: () =>
      data(api.GET('/api/contact-lists/{id}/contacts/{contact_id}', { params: { path: { id, contact_id: contactId } } })),
  });
  if (contact.isPending) return <Loading />;
  if (contact.error) return <ErrorNote error={contact.error} retry={() => contact.refetch()} />;
  const c = contact.data;
  const name = c.name ?? ([c.first_name, c.last_name].filter(Boolean).join(' ') || null);
  const vars = Object.entries(c.variables);
  return (
    <section>
      <p className="small">
        <Link to={`/lists/${id}`}>Back to the list</Link>
      </p>
      <h1>{name ? `${name} · ${c.phone}` : c.phone}</h1>
      <div className="grid wide-first">
        <div>
          <History listId={id} contactId={contactId} />
        </div>
        <div className="panel">
          <h2>Details</h2>
          <dl className="facts">
            <dt>Number</dt>
            <dd className="phone">{c.phone}</dd>
            {c.email && (
              <>
                <dt>Email</dt>
                <dd>{c.email}</dd>
              </>
            )}
            {c.language && (
              <>
                <dt>Language</dt>
                <dd>{c.language}</dd>
              </>
            )}
            {c.time_zone && (
              <>
                <dt>Time zone</dt>
                <dd>{c.time_zone}</dd>
              </>
            )}
            {c.tags.length > 0 && (
              <>
                <dt>Tags</dt>
                <dd>{c.tags.join(', ')}</dd>
              </>
            )}
            <dt>Added</dt>
            <dd>{when(c.created_at)}</dd>
          </dl>
          <h3>Variables</h3>
          {vars.length === 0 ? (
            <p className="muted">None.</p>
          ) : (
            <dl className="facts" aria-label="Variables">
              {vars.map(([k, v]) => (
                <div key={k} className="contents">
                  <dt>
                    <code>{`{{${k}}}`}</code>
                  </dt>
                  <dd>{v}</dd>
                </div>
              ))}
            </dl>
          )}
        </div>
      </div>
    </section>
  );
}
