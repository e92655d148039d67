import { useQuery } from '@tanstack/react-query';
import { useParams } from 'react-router';
import { api, data } from '../api/client';
import { Badge, Empty, ErrorNote, Loading, when } from '../components/States';

export default function Conversation() {
  const { id = '' } = useParams();
  const conv = useQuery({
    queryKey: ['conversation', id],
    queryFn: () => data(api.GET('/api/conversations/{id}', { params: { path: { id } } })),
    refetchInterval: 2_000,
  });
  if (conv.isPending) return <Loading />;
  if (conv.error) return <ErrorNote error={conv.error} retry={() => conv.refetch()} />;
  const { agent, messages } = conv.data;
  return (
    <section>
      <div className="title-row">
        <h1>{agent ? `${agent.theirs} · ${agent.channel}` : 'Conversation'}</h1>
        {agent && <Badge status={agent.needs_human ? 'needs_human' : agent.status} />}
      </div>
      <div className="grid wide-first">
        <div className="panel thread" aria-label="Messages">
          {messages.length === 0 ? (
            <Empty>No messages.</Empty>
          ) : (
            <ol className="plain">
              {messages.map((m) => (
                <li key={m.id} className={`msg ${m.direction}`}>
                  <p className="bubble">{m.body}</p>
                  <p className="muted small">
                    {when(m.created_at)} · <Badge status={m.status} />
                    {m.error_code != null && <> · Twilio error {m.error_code}</>}
                  </p>
                </li>
              ))}
            </ol>
          )}
        </div>
        {agent && (
          <div className="panel">
            <h2>The agent</h2>
            <dl className="facts">
              <dt>Profile</dt>
              <dd>{agent.profile ?? agent.agent ?? '—'}</dd>
              <dt>Disposition</dt>
              <dd>{agent.disposition ?? '—'}</dd>
              <dt>Tokens</dt>
              <dd>
                {agent.prompt_tokens.toLocaleString()} in, {agent.completion_tokens.toLocaleString()} out
              </dd>
            </dl>
            {agent.summary && (
              <>
                <h3>Summary</h3>
                <p>{agent.summary}</p>
              </>
            )}
            <h3>Actions</h3>
            {agent.actions.length === 0 ? (
              <p className="muted">None.</p>
            ) : (
              <ul className="plain">
                {agent.actions.map((a) => (
                  <li key={`${a.turn_id}-${a.kind}`}>
                    <Badge status={a.kind} /> {a.detail} <span className="muted small">{when(a.at)}</span>
                  </li>
                ))}
              </ul>
            )}
          </div>
        )}
      </div>
    </section>
  );
}
