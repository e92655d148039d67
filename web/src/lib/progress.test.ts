import { describe, expect, it } from 'vitest';
import { eta, summarize } from './progress';

describe('summarize', () => {
  it('counts final statuses as done', () => {
    expect(summarize({ total: 10, counts: { delivered: 6, failed: 1, pending: 2, sending: 1 } })).toEqual({
      total: 10,
      done: 7,
      open: 3,
      percent: 70,
      failed: 1,
    });
  });
  it('never shows a negative count a moment of counter skew can give', () => {
    expect(summarize({ total: 2, counts: { delivered: 2, sending: 1, sent: -1 } }).done).toBe(2);
  });
  it('handles a campaign before materialising', () => {
    expect(summarize({ total: 0, counts: {} }).percent).toBe(0);
  });
});

describe('eta', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it('speaks in minutes and hours', () => {
    expect(eta('2026-01-01T00:00:30Z', now)).toBe('in under a minute');
    expect(eta('2026-01-01T00:03:00Z', now)).toBe('in 3 min');
    expect(eta('2026-01-01T02:05:00Z', now)).toBe('in 2 h 5 min');
    expect(eta(null, now)).toBeNull();
  });
});
