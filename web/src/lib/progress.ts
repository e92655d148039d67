// Campaign progress as the pages show it.
import type { components } from '../api/schema';

export type Progress = components['schemas']['ProgressView'];

/** Item statuses that are final, in the order the pages list them. */
export const FINAL = [
  'delivered',
  'read',
  'sent',
  'answered',
  'voicemail_left',
  'machine',
  'busy',
  'no_answer',
  'failed',
  'undelivered',
  'skipped',
  'cancelled',
] as const;
/** Item statuses still in play (the api counts every other status as done). */
export const OPEN = ['pending', 'sending'] as const;

export interface Summary {
  total: number;
  done: number;
  open: number;
  /** 0-100, one decimal. */
  percent: number;
  failed: number;
}

export function summarize(p: Pick<Progress, 'total' | 'counts'>): Summary {
  const counts = p.counts ?? {};
  const get = (k: string) => Math.max(0, counts[k] ?? 0);
  const open = OPEN.reduce((n, k) => n + get(k), 0);
  const all = Object.values(counts).reduce((n, v) => n + Math.max(0, v), 0);
  const done = Math.max(0, all - open);
  const total = Math.max(p.total, all);
  const percent = total === 0 ? 0 : Math.min(100, Math.round((done / total) * 1000) / 10);
  return { total, done, open, percent, failed: get('failed') + get('undelivered') };
}

/** "in 3 min", "in 2 h 5 min", or null. */
export function eta(expectedFinish: string | null | undefined, now: number = Date.now()): string | null {
  if (!expectedFinish) return null;
  const ms = Date.parse(expectedFinish) - now;
  if (!Number.isFinite(ms)) return null;
  if (ms < 60_000) return 'in under a minute';
  const min = Math.round(ms / 60_000);
  if (min < 60) return `in ${min} min`;
  return `in ${Math.floor(min / 60)} h ${min % 60} min`;
}
