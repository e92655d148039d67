// Signing in: the api's session cookie (HttpOnly, SameSite=Strict) rides along by itself;
// state-changing requests also carry the session's CSRF token, which only this page can read.
import { ApiError } from '../api/client';

export interface Me {
  kind: string;
  id: string;
  name: string;
  role: string;
  csrf_token: string;
  expires_at: string;
}

let csrf = '';
let onSignedOut: (() => void) | null = null;

/** The CSRF token of the signed-in session ('' when signed out). */
export function csrfToken(): string {
  return csrf;
}

/** Called when any request answers 401: the session expired or was revoked. */
export function setSignedOutHandler(handler: (() => void) | null) {
  onSignedOut = handler;
}

export function signedOut() {
  csrf = '';
  onSignedOut?.();
}

async function errorOf(r: Response, fallback: string): Promise<ApiError> {
  const body = (await r.json().catch(() => null)) as { error?: string } | null;
  const retry = r.headers.get('Retry-After');
  const text = body?.error ?? fallback;
  return new ApiError(r.status, retry ? `${text} (try again in ${retry} s)` : text);
}

/** Who is signed in, or null. */
export async function fetchMe(): Promise<Me | null> {
  const r = await fetch('/api/auth/me', { headers: { accept: 'application/json' } });
  if (r.status === 401) {
    csrf = '';
    return null;
  }
  if (!r.ok) throw await errorOf(r, `${r.status} ${r.statusText}`);
  const me = (await r.json()) as Me;
  csrf = me.csrf_token;
  return me;
}

export async function signIn(email: string, password: string): Promise<Me> {
  const r = await fetch('/api/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  if (r.status === 401) throw new ApiError(401, 'Wrong email or password.');
  if (!r.ok) throw await errorOf(r, `${r.status} ${r.statusText}`);
  const me = (await r.json()) as Me;
  csrf = me.csrf_token;
  return me;
}

export async function signOut(): Promise<void> {
  await fetch('/api/auth/logout', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
    body: '{}',
  });
  csrf = '';
}
