import { describe, expect, it } from 'vitest';
import { emptyDraft, toRequest, validate, type CampaignDraft } from './campaignForm';

const ok: CampaignDraft = { ...emptyDraft, name: 'Spring', list_id: 'l1', template: 'Hi {{name}}' };

describe('validate', () => {
  it('accepts a plain SMS campaign', () => {
    expect(validate(ok)).toEqual({});
  });
  it('asks for a name, a list and a message', () => {
    expect(Object.keys(validate(emptyDraft)).sort()).toEqual(['list_id', 'name', 'template']);
  });
  it('applies the api rate bounds', () => {
    expect(validate({ ...ok, rate_per_second: '0' }).rate_per_second).toBeUndefined();
    expect(validate({ ...ok, rate_per_second: '0.0001' }).rate_per_second).toBeDefined();
    expect(validate({ ...ok, rate_per_second: '10001' }).rate_per_second).toBeDefined();
    expect(validate({ ...ok, rate_per_second: 'fast' }).rate_per_second).toBeDefined();
    expect(validate({ ...ok, channel: 'voice', from: '+14155550100', agent_profile: 'sales', rate_per_second: '101' }).rate_per_second).toBeDefined();
  });
  it('wants both ends of a window as HH:MM', () => {
    expect(validate({ ...ok, window_start: '09:00' }).window_end).toBeDefined();
    expect(validate({ ...ok, window_start: '09:00', window_end: '24:00' }).window_end).toBeDefined();
    expect(validate({ ...ok, window_start: '09:00', window_end: '20:30' })).toEqual({});
  });
  it('holds voice campaigns to their own rules', () => {
    const voice = { ...ok, channel: 'voice' as const, template: '' };
    expect(Object.keys(validate(voice)).sort()).toEqual(['agent_profile', 'from']);
    expect(validate({ ...voice, from: '+14155550100', agent_profile: 'sales', max_attempts: '11' }).max_attempts).toBeDefined();
  });
  it('checks WhatsApp content SIDs', () => {
    const wa = { ...ok, channel: 'whatsapp' as const, from: '+14155550100' };
    expect(validate({ ...wa, content_sid: 'HX123' }).content_sid).toBeDefined();
    expect(validate({ ...wa, content_sid: 'HX' + 'a'.repeat(32) })).toEqual({});
    expect(validate({ ...ok, content_sid: 'HX' + 'a'.repeat(32) }).content_sid).toBeDefined();
  });
  it('wants the end after the start', () => {
    expect(validate({ ...ok, start_at: '2030-01-02T10:00', end_at: '2030-01-01T10:00' }).end_at).toBeDefined();
  });
});

describe('toRequest', () => {
  it('sends numbers as numbers and 0 for the defaults', () => {
    const r = toRequest({ ...ok, rate_per_second: '2.5' });
    expect(r).toMatchObject({ name: 'Spring', channel: 'sms', rate_per_second: 2.5, max_attempts: 0, agent_profile: '' });
    expect(r.start_at).toBeNull();
  });
});
