// The typed client: paths and shapes come from src/api/schema.ts, generated from the api's
// OpenAPI document (`npm run gen`), never written by hand.
import createClient from 'openapi-fetch';
import type { components, paths } from './schema';
import { csrfToken, signedOut } from '../lib/auth';

export type Schemas = components['schemas'];

export const api = createClient<paths>({ baseUrl: '' });

// The session's CSRF token on every state-changing request; a 401 means the session ended.
api.use({
  onRequest({ request }) {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      request.headers.set('X-CSRF-Token', csrfToken());
    }
    return request;
  },
  onResponse({ response }) {
    if (response.status === 401) signedOut();
    return response;
  },
});

/** An answer that was not a success, with the api's message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The data of an openapi-fetch answer, or an ApiError carrying the api's `error` text. */
export async function data<T>(
  call: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  const { data, error, response } = await call;
  if (response.ok && data !== undefined) return data;
  if (response.ok) return undefined as T;
  const text =
    error && typeof error === 'object' && 'error' in error && typeof error.error === 'string'
      ? error.error
      : `${response.status} ${response.statusText}`;
  throw new ApiError(response.status, text);
}
