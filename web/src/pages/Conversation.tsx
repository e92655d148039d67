import { useState, type FormEvent } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Link, useParams } from 'react-router';
import { api, data } from '../api/client';
import { Badge, Empty, ErrorNote, Loading, when } from '../components/States';
import { smsSegments } from '../lib/template';
import { useCan } from '../lib/role';

/** A fresh id per attempt the person makes; a retry of the same attempt reuses it. */
function requestId(): string {
  return crypto.randomUUID();
}

/** The hand-over desk: a person replies by hand, then hands the conversation back. */
function HandOver({ id, onDone }: { id: string; onDone: () => void }) {
  const [text, setText] = useState('');
  // One id per reply written: pressing Send again after a network error cannot send twice.
  const [pending, setPending] = useState<string>(requestId);
  const send = useMutation({
    mutationFn: (body: string) =>
      data(api.POST('/api/conversations/{id}/replies', { params: { path: { id } }, body: { body, request_id: pending } })),
    onSuccess: () => {
      setText('');
      setPending(requestId());
      onDone();
    },
  });
  const back = useMutation({
    mutationFn: () =>
      data(api.POST('/api/conversations/{id}/hand-back', { params: { path: { id } }, body: { request_id: requestId() } })),
    onSuccess: onDone,
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (text.trim()) send.mutate(text.trim());
  };
  const seg = smsSegments(text);
  return (
    <form className="panel" onSubmit={submit} aria-label="Reply by hand">
      <h2>Waiting for a person</h2>
      <label>
        Your reply
        <textarea
          rows={3}
          value={text}
          maxLength={1600}
          onChange={(e) => {
            setText(e.target.value);
            // Another text is another reply: a request id stands for one text only.
            setPending(requestId());
          }}
        />
      </label>
      <p className="muted small">
        {seg.segments > 0 ? `${seg.encoding}, ${seg.segments} segment${seg.segments === 1 ? '' : 's'}` : ' '}
      </p>
      <div className="actions">
        <button type="submit" disabled={!text.trim() || send.isPending}>
          Send reply
        </button>
        <button type="button" className="secondary" onClick={() => back.mutate()} disabled={back.isPending}>
          Hand back to the agent
        </button>
      </div>
      {send.error && <ErrorNote error={send.error} />}
      {back.error && <ErrorNote error={back.error} />}
    </form>
  );
}

export default function Conversation() {
  const { id = '' } = useParams();
  const client = useQueryClient();
  const canManage = useCan('manager');
  const conv = useQuery({
    queryKey: ['conversation', id],
    queryFn: () => data(api.GET('/api/conversations/{id}', { params: { path: { id } } })),
    // Delivery statuses and new messages come live (`statuses` and `messages` events); this
    // slow refresh is only a fallback for a lost event stream.
    refetchInterval: 60_000,
  });
  if (conv.isPending) return <Loading />;
  if (conv.error) return <ErrorNote error={conv.error} retry={() => conv.refetch()} />;
  const { agent, messages, transcript } = conv.data;
  return (
    <section>
      <div className="title-row">
        <h1>{agent ? `${agent.theirs} · ${agent.channel}` : 'Conversation'}</h1>
        {agent && <Badge status={agent.needs_human ? 'needs_human' : agent.status} />}
      </div>
      <div className="grid wide-first">
        <div className="panel thread" aria-label="Messages">
          {transcript.length > 0 ? (
            <ol className="plain">
              {transcript.map((l, i) => (
                <li key={i} className={`msg ${l.speaker === 'person' ? 'inbound' : 'outbound'}`}>
                  <p className="bubble">
                    {l.text}
                    {l.interrupted && <span className="muted small"> (interrupted)</span>}
                  </p>
                  <p className="muted small">{when(l.at)}</p>
                </li>
              ))}
            </ol>
          ) : messages.length === 0 ? (
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
          <div>
          {agent.needs_human && canManage && (
            <HandOver
              id={id}
              onDone={() => {
                client.invalidateQueries({ queryKey: ['conversation', id] });
                client.invalidateQueries({ queryKey: ['conversations'] });
              }}
            />
          )}
          <div className="panel">
            <h2>The agent</h2>
            <dl className="facts">
              <dt>Profile</dt>
              <dd>
                {agent.profile ? (
                  <Link to={`/settings/profiles/${agent.profile}`}>
                    {agent.profile}
                    {agent.profile_version != null && ` (version ${agent.profile_version})`}
                  </Link>
                ) : (
                  (agent.agent ?? '—')
                )}
              </dd>
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
          </div>
        )}
      </div>
    </section>
  );
}
