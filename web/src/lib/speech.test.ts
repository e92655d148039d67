import { describe, expect, it } from 'vitest';
import { takePieces } from './speech';

describe('takePieces', () => {
  it('speaks whole sentences and clauses and keeps the rest for more tokens', () => {
    expect(takePieces('Hello there! How can I')).toEqual({ pieces: ['Hello there!'], rest: 'How can I' });
    expect(takePieces('Sure, we open at 9. Bring')).toEqual({ pieces: ['Sure,', 'we open at 9.'], rest: 'Bring' });
  });

  it('waits for the space after a stop, so 3.5 or a URL is not cut', () => {
    expect(takePieces('It costs 3.5')).toEqual({ pieces: [], rest: 'It costs 3.5' });
  });

  it('cuts a long run without punctuation at a word', () => {
    const long = 'word '.repeat(40);
    const { pieces, rest } = takePieces(long);
    expect(pieces.length).toBeGreaterThan(0);
    expect(pieces[0]?.length).toBeLessThanOrEqual(120);
    expect((pieces.join(' ') + ' ' + rest).replace(/\s+/g, ' ').trim()).toBe(long.trim());
  });
});
