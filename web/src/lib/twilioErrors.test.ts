import { describe, expect, it } from 'vitest';
import { twilioError } from './twilioErrors';

describe('twilioError', () => {
  it('explains the codes campaigns meet in words', () => {
    expect(twilioError(21610)).toMatch(/unsubscribed/);
    expect(twilioError(30007)).toMatch(/spam/);
    expect(twilioError(63016)).toMatch(/24-hour/);
    for (const code of [21211, 21408, 21612, 21614, 30003, 30004, 30005, 30006, 30008, 30034]) {
      expect(twilioError(code), String(code)).not.toMatch(/see twilio\.com/);
    }
  });

  it('points to Twilio for a code it does not know, and says nothing without one', () => {
    expect(twilioError(12345)).toMatch(/twilio\.com\/docs\/api\/errors\/12345/);
    expect(twilioError(null)).toBeNull();
    expect(twilioError(undefined)).toBeNull();
  });
});
