import { useQuery } from '@tanstack/react-query';
import { Link, useParams } from 'react-router';
import { api, data, type Schemas } from '../api/client';
import { Badge, Empty, ErrorNote, Loading, when } from '../components/States';

function Transcript({ turns }: { turns: Schemas['TurnView'][] }) {
  if (turns.length === 0) return <Empty>Nothing was said.</Empty>;
  return (
    <ol className="plain transcript">
      {turns.map((t, i) => (
        <li key={i} className={`msg ${t.speaker === 'agent' ? 'outbound' : 'inbound'}`}>
          <p className="bubble">{t.text}</p>
          <p className="muted small">
            {t.speaker} · {when(t.at)}
            {t.confidence != null && <> · confidence {Math.round(t.confidence * 100)}%</>}
            {t.interrupted && <> · cut off by the caller (what was spoken until then)</>}
          </p>
        </li>
      ))}
    </ol>
  );
}

export default function Call() {
  const { id = '' } = useParams();
  const call = useQuery({
    queryKey: ['call', id],
    queryFn: () => data(api.GET('/api/calls/{id}', { params: { path: { id } } })),
    refetchInterval: (q) => (q.state.data?.running === false ? false : 1_000),
  });
  if (call.isPending) return <Loading />;
  if (call.error) return <ErrorNote error={call.error} retry={() => call.refetch()} />;
  const { live, logs, running } = call.data;
  return (
    <section>
      <div className="title-row">
        <h1>Call {live ? (live.direction === 'inbound' ? live.theirs : live.theirs) : (logs[0]?.to ?? '')}</h1>
        <Badge status={running ? (live?.status ?? 'running') : (logs.at(-1)?.outcome ?? 'ended')} />
      </div>
      {live && (
        <div className="panel">
          <h2>Live (attempt {live.attempt})</h2>
          <Transcript turns={live.transcript} />
        </div>
      )}
      {logs.map((l) => (
        <div className="panel" key={l.id}>
          <h2>
            Attempt {l.attempt}: <Badge status={l.outcome ?? l.status} />
          </h2>
          <dl className="facts">
            <dt>From</dt>
            <dd>{l.from}</dd>
            <dt>To</dt>
            <dd>{l.to}</dd>
            <dt>Started</dt>
            <dd>{when(l.started_at)}</dd>
            <dt>Duration</dt>
            <dd>{l.duration_secs != null ? `${l.duration_secs} s` : '—'}</dd>
            <dt>Answered by</dt>
            <dd>{l.answered_by ?? '—'}</dd>
            <dt>Disposition</dt>
            <dd>{l.disposition ?? '—'}</dd>
            <dt>Agent profile</dt>
            <dd>
              {l.profile ? (
                <Link to={`/settings/profiles/${l.profile}`}>
                  {l.profile}
                  {l.profile_version != null && ` (version ${l.profile_version})`}
                </Link>
              ) : (
                '—'
              )}
            </dd>
          </dl>
          {l.summary && <p>{l.summary}</p>}
          {l.recording_url && (
            <p>
              <a href={l.recording_url}>Recording</a>
            </p>
          )}
          <h3>Transcript</h3>
          <Transcript turns={l.transcript} />
        </div>
      ))}
    </section>
  );
}
