import { lazy, Suspense, useState, type FormEvent } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Link, useNavigate } from 'react-router';
import { api, data, type Schemas } from '../api/client';
import { Empty, ErrorNote, Loading, when } from '../components/States';
import { fetchMe } from '../lib/auth';
import { numberRoles } from '../lib/profiles';

const Access = lazy(() => import('./Access'));

const capitalise = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

function Deployment() {
  const settings = useQuery({ queryKey: ['settings'], queryFn: () => data(api.GET('/api/settings')) });
  if (settings.isPending) return <Loading what="Loading the settings" />;
  if (settings.error) return <ErrorNote error={settings.error} retry={() => settings.refetch()} />;
  const s = settings.data;
  return (
    <div className="panel">
      <h2>Deployment</h2>
      <p className="muted small">Set by the environment when the api starts; read-only here.</p>
      <dl className="facts">
        <dt>Twilio</dt>
        <dd>
          {s.twilio_mode === 'simulator' ? 'Simulator' : 'Real Twilio'}{' '}
          <span className="muted small">({s.twilio_base_url})</span>
        </dd>
        <dt>Temporal namespace</dt>
        <dd>{s.temporal_namespace}</dd>
        <dt>Task queue</dt>
        <dd>{s.task_queue}</dd>
        <dt>Public base URL</dt>
        <dd>{s.public_base_url}</dd>
        <dt>Temporal UI</dt>
        <dd>{s.temporal_ui_url ? <a href={s.temporal_ui_url}>{s.temporal_ui_url}</a> : 'not set (TEMPORAL_UI_URL)'}</dd>
      </dl>
    </div>
  );
}

function Numbers({ profiles, defaultFrom }: { profiles: Schemas['ProfileView'][]; defaultFrom?: string | null }) {
  const rows = numberRoles(profiles, defaultFrom);
  return (
    <div className="panel">
      <h2>Phone numbers</h2>
      {rows.length === 0 ? (
        <Empty>No numbers: set TWILIO_FROM_NUMBER, or give a profile a number.</Empty>
      ) : (
        <table aria-label="Phone numbers">
          <thead>
            <tr>
              <th scope="col">Number</th>
              <th scope="col">What it does</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.number}>
                <td className="phone">{r.number}</td>
                <td>
                  {r.roles.map((role, i) => (
                    <span key={i}>
                      {i > 0 && '; '}
                      {role.profile ? (
                        <>
                          {i === 0 ? capitalise(role.text) : role.text} <Link to={`/settings/profiles/${role.profile}`}>{role.profile}</Link>
                        </>
                      ) : i === 0 ? (
                        capitalise(role.text)
                      ) : (
                        role.text
                      )}
                    </span>
                  ))}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function NewProfile() {
  const [name, setName] = useState('');
  const navigate = useNavigate();
  const client = useQueryClient();
  const create = useMutation({
    mutationFn: () => data(api.POST('/api/agent-profiles', { body: { name: name.trim() } })),
    onSuccess: (p) => {
      void client.invalidateQueries({ queryKey: ['profiles'] });
      navigate(`/settings/profiles/${p.name}`);
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (name.trim()) create.mutate();
  };
  return (
    <form className="inline" onSubmit={submit} aria-label="New profile">
      <label>
        New profile
        <input
          value={name}
          onChange={(e) => setName(e.target.value)}
          placeholder="support"
          pattern="[a-z0-9_\-]{1,64}"
          title="1-64 lower-case letters, digits, - or _"
        />
      </label>
      <button type="submit" disabled={!name.trim() || create.isPending}>
        Create profile
      </button>
      {create.error && <ErrorNote error={create.error} />}
    </form>
  );
}

export default function Settings() {
  const me = useQuery({ queryKey: ['me'], queryFn: fetchMe, staleTime: 60_000 });
  const profiles = useQuery({ queryKey: ['profiles'], queryFn: () => data(api.GET('/api/agent-profiles')) });
  const settings = useQuery({ queryKey: ['settings'], queryFn: () => data(api.GET('/api/settings')) });
  const admin = me.data?.role === 'admin';
  return (
    <section>
      <h1>Settings</h1>
      <Deployment />
      {profiles.isPending ? (
        <Loading what="Loading the profiles" />
      ) : profiles.error ? (
        <ErrorNote error={profiles.error} retry={() => profiles.refetch()} />
      ) : (
        <>
          <Numbers profiles={profiles.data} defaultFrom={settings.data?.default_from} />
          <div className="panel">
            <h2>Agent profiles</h2>
            <p className="muted small">
              Who the agent is on each number. Every change is kept as a version; a conversation or call that starts after
              a change uses it.{admin ? '' : ' Only an admin can change them.'}
            </p>
            {profiles.data.length === 0 ? (
              <Empty>No profiles yet{admin ? ': create one below, or set AGENTS_FILE.' : '.'}</Empty>
            ) : (
              <table aria-label="Agent profiles">
                <thead>
                  <tr>
                    <th scope="col">Profile</th>
                    <th scope="col">Numbers</th>
                    <th scope="col" className="num">
                      Version
                    </th>
                    <th scope="col">Changed</th>
                  </tr>
                </thead>
                <tbody>
                  {profiles.data.map((p) => (
                    <tr key={p.name}>
                      <td>
                        <Link to={`/settings/profiles/${p.name}`}>{p.name}</Link>
                      </td>
                      <td className="phone">{p.numbers.join(', ') || '—'}</td>
                      <td className="num">{p.version}</td>
                      <td>
                        {when(p.created_at)} <span className="muted small">by {p.created_by}</span>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
            {admin && <NewProfile />}
          </div>
        </>
      )}
      {admin && (
        <Suspense fallback={<Loading />}>
          <Access />
        </Suspense>
      )}
    </section>
  );
}
