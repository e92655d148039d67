import { useEffect, useState, type FormEvent, type ReactNode } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { fetchMe, setSignedOutHandler, signIn, signOut, type Me } from '../lib/auth';
import { ErrorNote, Loading } from './States';

function SignIn({ onDone }: { onDone: (me: Me) => void }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const login = useMutation({ mutationFn: () => signIn(email.trim(), password), onSuccess: onDone });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    login.mutate();
  };
  return (
    <main id="main" className="signin">
      <form className="panel" onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">Sign in to Voice Agent</h1>
        <label>
          Email
          <input type="email" autoComplete="username" value={email} onChange={(e) => setEmail(e.target.value)} required />
        </label>
        <label>
          Password
          <input
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
          />
        </label>
        {login.error && <ErrorNote error={login.error} />}
        <div className="actions">
          <button type="submit" disabled={login.isPending || !email || !password}>
            Sign in
          </button>
        </div>
      </form>
    </main>
  );
}

/** Shows the sign-in page until there is a session, and again when it ends. */
export function AuthGate({ children }: { children: (me: Me, signOut: () => void) => ReactNode }) {
  const client = useQueryClient();
  const me = useQuery({ queryKey: ['me'], queryFn: fetchMe, retry: false, staleTime: 60_000 });
  // Another person's data must not show after a sign-in or out (the session query stays: its
  // observer here must see the new value).
  const forgetData = () => client.removeQueries({ predicate: (q) => q.queryKey[0] !== 'me' });
  useEffect(() => {
    setSignedOutHandler(() => client.setQueryData(['me'], null));
    return () => setSignedOutHandler(null);
  }, [client]);
  if (me.isPending) return <Loading what="Checking your session" />;
  if (me.error) return <ErrorNote error={me.error} retry={() => me.refetch()} />;
  if (!me.data)
    return (
      <SignIn
        onDone={(who) => {
          forgetData();
          client.setQueryData(['me'], who);
        }}
      />
    );
  return (
    <>
      {children(me.data, () => {
        void signOut().finally(() => {
          client.setQueryData(['me'], null);
          forgetData();
        });
      })}
    </>
  );
}
