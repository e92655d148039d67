// Users, API keys and the audit log: the admin's part of Settings.
import { useState, type FormEvent } from 'react';
import { useInfiniteQuery, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, data } from '../api/client';
import { Badge, Empty, ErrorNote, Loading, when } from '../components/States';

const ROLES = ['viewer', 'manager', 'admin'] as const;

function Users() {
  const client = useQueryClient();
  const users = useQuery({ queryKey: ['users'], queryFn: () => data(api.GET('/api/users')) });
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [role, setRole] = useState<string>('viewer');
  const refresh = () => client.invalidateQueries({ queryKey: ['users'] });
  const create = useMutation({
    mutationFn: () => data(api.POST('/api/users', { body: { email: email.trim(), password, role } })),
    onSuccess: () => {
      setEmail('');
      setPassword('');
      void refresh();
    },
  });
  const change = useMutation({
    mutationFn: (v: { id: string; role?: string; disabled?: boolean }) =>
      data(api.PATCH('/api/users/{id}', { params: { path: { id: v.id } }, body: { role: v.role, disabled: v.disabled } })),
    onSuccess: () => void refresh(),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <div className="panel">
      <h2>Users</h2>
      {users.isPending ? (
        <Loading />
      ) : users.error ? (
        <ErrorNote error={users.error} retry={() => users.refetch()} />
      ) : users.data.users.length === 0 ? (
        <Empty>No users.</Empty>
      ) : (
        <div className="scroll-x">
          <table aria-label="Users">
            <thead>
              <tr>
                <th scope="col">Email</th>
                <th scope="col">Role</th>
                <th scope="col">Status</th>
                <th scope="col">Since</th>
              </tr>
            </thead>
            <tbody>
              {users.data.users.map((u) => (
                <tr key={u.id}>
                  <td>{u.email}</td>
                  <td>
                    <select
                      aria-label={`Role of ${u.email}`}
                      value={u.role}
                      disabled={change.isPending}
                      onChange={(e) => change.mutate({ id: u.id, role: e.target.value })}
                    >
                      {ROLES.map((r) => (
                        <option key={r}>{r}</option>
                      ))}
                    </select>
                  </td>
                  <td>
                    <Badge status={u.disabled ? 'disabled' : 'active'} />{' '}
                    <button
                      type="button"
                      className="link"
                      disabled={change.isPending}
                      onClick={() => change.mutate({ id: u.id, disabled: !u.disabled })}
                    >
                      {u.disabled ? 'Enable' : 'Disable'}
                    </button>
                  </td>
                  <td>{when(u.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {change.error && <ErrorNote error={change.error} />}
      <form className="inline" onSubmit={submit} aria-label="New user">
        <label>
          Email
          <input type="email" value={email} onChange={(e) => setEmail(e.target.value)} autoComplete="off" />
        </label>
        <label>
          Password
          <input
            type="password"
            value={password}
            minLength={12}
            onChange={(e) => setPassword(e.target.value)}
            autoComplete="new-password"
          />
        </label>
        <label>
          Role
          <select value={role} onChange={(e) => setRole(e.target.value)}>
            {ROLES.map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </label>
        <button type="submit" disabled={!email.trim() || password.length < 12 || create.isPending}>
          Add user
        </button>
      </form>
      {create.error && <ErrorNote error={create.error} />}
    </div>
  );
}

function Keys() {
  const client = useQueryClient();
  const keys = useQuery({ queryKey: ['api-keys'], queryFn: () => data(api.GET('/api/api-keys')) });
  const [name, setName] = useState('');
  const [role, setRole] = useState<string>('viewer');
  const [days, setDays] = useState('90');
  const [shown, setShown] = useState<{ name: string; key: string } | null>(null);
  const refresh = () => client.invalidateQueries({ queryKey: ['api-keys'] });
  const create = useMutation({
    mutationFn: () =>
      data(
        api.POST('/api/api-keys', {
          body: { name: name.trim(), role, expires_in_days: days ? Number(days) : null },
        }),
      ),
    onSuccess: (k) => {
      setShown({ name: k.name, key: k.key });
      setName('');
      void refresh();
    },
  });
  const revoke = useMutation({
    mutationFn: (prefix: string) => data(api.DELETE('/api/api-keys/{id}', { params: { path: { id: prefix } } })),
    onSuccess: () => void refresh(),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <div className="panel">
      <h2>API keys</h2>
      {shown && (
        <div className="notice" role="status">
          <p>
            The key <strong>{shown.name}</strong>, shown this once: copy it now.
          </p>
          <code className="secret">{shown.key}</code>
          <button type="button" className="link" onClick={() => setShown(null)}>
            Done
          </button>
        </div>
      )}
      {keys.isPending ? (
        <Loading />
      ) : keys.error ? (
        <ErrorNote error={keys.error} retry={() => keys.refetch()} />
      ) : keys.data.api_keys.length === 0 ? (
        <Empty>No API keys.</Empty>
      ) : (
        <div className="scroll-x">
          <table aria-label="API keys">
            <thead>
              <tr>
                <th scope="col">Prefix</th>
                <th scope="col">Name</th>
                <th scope="col">Role</th>
                <th scope="col">State</th>
                <th scope="col">Expires</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {keys.data.api_keys.map((k) => (
                <tr key={k.prefix}>
                  <td>
                    <code>{k.prefix}</code>
                  </td>
                  <td>{k.name}</td>
                  <td>{k.role}</td>
                  <td>
                    <Badge status={k.state} />
                  </td>
                  <td>{k.expires_at ? when(k.expires_at) : 'never'}</td>
                  <td>
                    {k.state === 'active' && (
                      <button
                        type="button"
                        className="link"
                        aria-label={`Revoke ${k.name}`}
                        disabled={revoke.isPending}
                        onClick={() => revoke.mutate(k.prefix)}
                      >
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {revoke.error && <ErrorNote error={revoke.error} />}
      <form className="inline" onSubmit={submit} aria-label="New API key">
        <label>
          Key name
          <input value={name} maxLength={100} onChange={(e) => setName(e.target.value)} />
        </label>
        <label>
          Key role
          <select value={role} onChange={(e) => setRole(e.target.value)}>
            {ROLES.map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </label>
        <label>
          Expires in days
          <input type="number" min={1} max={3650} value={days} onChange={(e) => setDays(e.target.value)} />
        </label>
        <button type="submit" disabled={!name.trim() || create.isPending}>
          Create key
        </button>
      </form>
      {create.error && <ErrorNote error={create.error} />}
    </div>
  );
}

function Audit() {
  const audit = useInfiniteQuery({
    queryKey: ['audit'],
    queryFn: ({ pageParam }) => data(api.GET('/api/audit', { params: { query: { limit: 50, cursor: pageParam || undefined } } })),
    initialPageParam: '',
    getNextPageParam: (last) => last.next_cursor || undefined,
  });
  const rows = audit.data?.pages.flatMap((p) => p.entries) ?? [];
  return (
    <div className="panel">
      <h2>Audit log</h2>
      {audit.isPending ? (
        <Loading />
      ) : audit.error ? (
        <ErrorNote error={audit.error} retry={() => audit.refetch()} />
      ) : rows.length === 0 ? (
        <Empty>Nothing changed yet.</Empty>
      ) : (
        <div className="scroll-x">
          <table aria-label="Audit log">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">What</th>
                <th scope="col" className="num">
                  Answer
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.map((a) => (
                <tr key={a.id}>
                  <td>{when(a.at)}</td>
                  <td>{a.actor_name}</td>
                  <td>
                    <code>
                      {a.method} {a.route}
                    </code>
                    {a.target && <span className="muted small"> {a.target}</span>}
                  </td>
                  <td className="num">{a.status}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {audit.hasNextPage && (
        <button type="button" className="secondary" onClick={() => audit.fetchNextPage()} disabled={audit.isFetchingNextPage}>
          Older entries
        </button>
      )}
    </div>
  );
}

export default function Access() {
  return (
    <>
      <Users />
      <Keys />
      <Audit />
    </>
  );
}
