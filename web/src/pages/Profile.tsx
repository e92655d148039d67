import { useState, type FormEvent, type ReactNode } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Link, useParams } from 'react-router';
import { api, data, type Schemas } from '../api/client';
import { ErrorNote, Loading, when } from '../components/States';
import { fetchMe } from '../lib/auth';
import { changedFields, fromForm, toForm, type ProfileForm } from '../lib/profiles';

type Settings = Schemas['ProfileSettings'];
type TextKey = {
  [K in keyof Settings]: Settings[K] extends string | null | undefined ? K : never;
}[keyof Settings];
type NumKey = { [K in keyof Settings]: Settings[K] extends number ? K : never }[keyof Settings];

function Editor({
  profile,
  readOnly,
  onSaved,
}: {
  profile: Schemas['ProfileView'];
  readOnly: boolean;
  onSaved: (p: Schemas['ProfileView']) => void;
}) {
  const [form, setForm] = useState<ProfileForm>(() => toForm(profile));
  const [base, setBase] = useState(profile.version);
  const save = useMutation({
    mutationFn: () =>
      data(
        api.PUT('/api/agent-profiles/{name}', {
          params: { path: { name: profile.name } },
          body: { expected_version: base, ...fromForm(form) },
        }),
      ),
    onSuccess: (p) => {
      setBase(p.version);
      setForm(toForm(p));
      onSaved(p);
    },
  });
  const set = (patch: Partial<Settings>) => setForm((f) => ({ ...f, settings: { ...f.settings, ...patch } }));
  const text = (key: TextKey, label: string, hint?: string, rows = 0): ReactNode => {
    const value = (form.settings[key] as string | null | undefined) ?? '';
    const id = `f-${key}`;
    return (
      <div className="field">
        <label htmlFor={id}>{label}</label>
        {rows > 0 ? (
          <textarea id={id} rows={rows} value={value} onChange={(e) => set({ [key]: e.target.value } as Partial<Settings>)} />
        ) : (
          <input id={id} value={value} onChange={(e) => set({ [key]: e.target.value } as Partial<Settings>)} />
        )}
        {hint && <p className="muted small">{hint}</p>}
      </div>
    );
  };
  const setRelay = (patch: Partial<Settings['relay']>) => set({ relay: { ...form.settings.relay, ...patch } });
  const relayText = (key: 'tts_provider' | 'transcription_provider', label: string, hint: string): ReactNode => (
    <div className="field">
      <label htmlFor={`f-relay-${key}`}>{label}</label>
      <input
        id={`f-relay-${key}`}
        value={form.settings.relay[key] ?? ''}
        onChange={(e) => setRelay({ [key]: e.target.value })}
      />
      <p className="muted small">{hint}</p>
    </div>
  );
  const num = (key: NumKey, label: string, min: number, max: number): ReactNode => (
    <div className="field">
      <label htmlFor={`f-${key}`}>{label}</label>
      <input
        id={`f-${key}`}
        type="number"
        min={min}
        max={max}
        value={form.settings[key] as number}
        onChange={(e) => set({ [key]: Number(e.target.value) } as Partial<Settings>)}
      />
    </div>
  );
  const submit = (e: FormEvent) => {
    e.preventDefault();
    save.mutate();
  };
  return (
    <form className="panel form" onSubmit={submit} aria-label="Edit profile">
      <fieldset disabled={readOnly} className="plain-fieldset">
        <legend className="sr-only">Profile settings</legend>
        <h2>Who the agent is</h2>
        {text('greeting', 'Greeting', 'The first line of every call.')}
        {text('instructions', 'Instructions', "The model's system prompt: who the agent is and how it behaves.", 5)}
        <div className="field">
          <label htmlFor="f-facts">Facts</label>
          <textarea id="f-facts" rows={4} value={form.facts} onChange={(e) => setForm({ ...form, facts: e.target.value })} />
          <p className="muted small">One a line; the model claims nothing beyond them.</p>
        </div>
        <div className="row">
          {text('language', 'Language', 'BCP 47, e.g. en-US.')}
          {text('voice', 'Voice', 'On calls, e.g. Polly.Joanna.')}
          {text('transfer_number', 'Transfer number', 'Where a transfer on a call dials (E.164).')}
        </div>
        <h2>How calls speak</h2>
        <div className="row">
          <div className="field">
            <label htmlFor="f-voice_mode">Voice mode</label>
            <select
              id="f-voice_mode"
              value={form.settings.voice_mode}
              onChange={(e) => set({ voice_mode: e.target.value as Settings['voice_mode'] })}
            >
              <option value="gather">Turn by turn (Gather and Say)</option>
              <option value="relay">Streamed (ConversationRelay)</option>
            </select>
            <p className="muted small">Streamed replies start at once and the caller can cut them off.</p>
          </div>
          {relayText('tts_provider', 'Speech provider', 'ttsProvider, e.g. ElevenLabs; Twilio’s default when empty.')}
          {relayText('transcription_provider', 'Transcription provider', 'e.g. Deepgram.')}
        </div>
        <div className="row">
          <div className="field">
            <label htmlFor="f-relay-interruptible">Caller may interrupt with</label>
            <select
              id="f-relay-interruptible"
              value={form.settings.relay.interruptible}
              onChange={(e) => setRelay({ interruptible: e.target.value })}
            >
              <option value="any">speech or keys</option>
              <option value="speech">speech</option>
              <option value="dtmf">keys</option>
              <option value="none">nothing</option>
            </select>
          </div>
          <div className="field">
            <label htmlFor="f-relay-dtmf">
              <input
                id="f-relay-dtmf"
                type="checkbox"
                checked={form.settings.relay.dtmf_detection}
                onChange={(e) => setRelay({ dtmf_detection: e.target.checked })}
              />{' '}
              Keys reach the agent
            </label>
          </div>
        </div>
        <div className="field">
          <label htmlFor="f-numbers">Our numbers</label>
          <textarea
            id="f-numbers"
            rows={2}
            value={form.numbers}
            onChange={(e) => setForm({ ...form, numbers: e.target.value })}
          />
          <p className="muted small">Texts and calls to these numbers (E.164, one a line) get this profile.</p>
        </div>
        <h2>Limits</h2>
        <div className="row">
          {num('max_turns', 'Most turns', 1, 1000)}
          {num('max_reply_chars', 'Longest reply (characters)', 20, 4000)}
          {num('timeout_secs', 'Reply timeout (s)', 1, 120)}
          {num('max_silences', 'Silences before hanging up', 0, 10)}
        </div>
        <div className="row">
          {num('summary_after_idle_secs', 'Summary after quiet (s)', 10, 604800)}
          {num('turns_per_run', 'Turns per workflow run', 10, 1000)}
          {num('idle_close_secs', 'Close after silence (s)', 60, 2592000)}
        </div>
        <h2>What it says when</h2>
        {text('fallback_reply', 'Fallback reply', 'When the agent fails or times out.')}
        {text('closing', 'Closing', 'When the turns run out, or after too many silences.')}
        {text('transfer_message', 'Transfer message')}
        {text('reprompt', 'Re-prompt', 'After a silence on a call.')}
        {text('callback_message', 'Callback message', 'When a callback the agent scheduled comes due.')}
        <h2>Scripted rules</h2>
        {text(
          'rules_toml',
          'Rules (TOML)',
          'The scripted agent’s rules file; empty for the built-in rules. A model, when configured, ignores them.',
          8,
        )}
      </fieldset>
      {save.error && <ErrorNote error={save.error} />}
      {!readOnly && (
        <div className="actions">
          <button type="submit" disabled={save.isPending}>
            Save as version {base + 1}
          </button>
          <button type="button" className="secondary" onClick={() => setForm(toForm(profile))}>
            Undo changes
          </button>
        </div>
      )}
    </form>
  );
}

function History({
  name,
  versions,
  onLoad,
  readOnly,
}: {
  name: string;
  versions: Schemas['ProfileView'][];
  onLoad: (v: Schemas['ProfileView']) => void;
  readOnly: boolean;
}) {
  const [older, setOlder] = useState<Schemas['ProfileView'][]>([]);
  const all = [...versions, ...older];
  const last = all[all.length - 1];
  const more = useMutation({
    mutationFn: () =>
      data(api.GET('/api/agent-profiles/{name}/versions', { params: { path: { name }, query: { before: last?.version, limit: 20 } } })),
    onSuccess: (page) => setOlder((o) => [...o, ...page]),
  });
  return (
    <div className="panel">
      <h2>Versions</h2>
      <ol className="plain versions" aria-label="Versions">
        {all.map((v, i) => {
          const prev = all[i + 1];
          const changed = prev ? changedFields(prev, v) : [];
          return (
            <li key={v.version}>
              <strong>Version {v.version}</strong> <span className="muted small">{when(v.created_at)}</span>
              <br />
              <span className="small">
                {v.source === 'file' ? 'from the agents file' : `by ${v.created_by}`}
                {prev && (changed.length ? ` · changed ${changed.join(', ')}` : ' · no change')}
              </span>
              {!readOnly && i > 0 && (
                <button type="button" className="link" onClick={() => onLoad(v)}>
                  Load into the editor
                </button>
              )}
            </li>
          );
        })}
      </ol>
      {last && last.version > 1 && (
        <button type="button" className="secondary" onClick={() => more.mutate()} disabled={more.isPending}>
          Older versions
        </button>
      )}
      {more.error && <ErrorNote error={more.error} />}
    </div>
  );
}

export default function Profile() {
  const { name = '' } = useParams();
  const client = useQueryClient();
  const me = useQuery({ queryKey: ['me'], queryFn: fetchMe, staleTime: 60_000 });
  const detail = useQuery({
    queryKey: ['profile', name],
    queryFn: () => data(api.GET('/api/agent-profiles/{name}', { params: { path: { name } } })),
  });
  // Loading an old version replaces the editor's content (a new key remounts it).
  const [loaded, setLoaded] = useState<Schemas['ProfileView'] | null>(null);
  const [saved, setSaved] = useState<number | null>(null);
  if (detail.isPending) return <Loading />;
  if (detail.error) return <ErrorNote error={detail.error} retry={() => detail.refetch()} />;
  const { profile, versions } = detail.data;
  const readOnly = me.data?.role !== 'admin';
  const shown = loaded ? { ...loaded, version: profile.version } : profile;
  return (
    <section>
      <p className="small">
        <Link to="/settings">Settings</Link> › Agent profiles
      </p>
      <div className="title-row">
        <h1>{profile.name}</h1>
        <span className="badge">version {profile.version}</span>
      </div>
      {saved != null && (
        <p role="status" className="ok">
          Saved as version {saved}. New conversations and calls use it.
        </p>
      )}
      {loaded && (
        <p className="muted">
          Showing version {loaded.version} in the editor: saving makes it version {profile.version + 1}.
        </p>
      )}
      <div className="grid wide-first">
        <Editor
          key={`${profile.version}-${loaded?.version ?? 'head'}`}
          profile={shown}
          readOnly={readOnly}
          onSaved={(p) => {
            setSaved(p.version);
            setLoaded(null);
            void client.invalidateQueries({ queryKey: ['profile', name] });
            void client.invalidateQueries({ queryKey: ['profiles'] });
          }}
        />
        <History name={name} versions={versions} onLoad={setLoaded} readOnly={readOnly} />
      </div>
    </section>
  );
}
