// The campaign form's rules: the api's own (api/src/campaigns.rs `create`), checked as the
// manager types so a mistake is shown at its field before anything is sent.
import type { components } from '../api/schema';

export type NewCampaign = components['schemas']['NewCampaign'];
export type Channel = 'sms' | 'whatsapp' | 'voice';

export interface CampaignDraft {
  name: string;
  channel: Channel;
  from: string;
  list_id: string;
  template: string;
  content_sid: string;
  agent_profile: string;
  rate_per_second: string;
  max_attempts: string;
  window_start: string;
  window_end: string;
  start_at: string;
  end_at: string;
  max_in_flight: string;
  retry_after_secs: string;
}

export const emptyDraft: CampaignDraft = {
  name: '',
  channel: 'sms',
  from: '',
  list_id: '',
  template: '',
  content_sid: '',
  agent_profile: '',
  rate_per_second: '10',
  max_attempts: '',
  window_start: '',
  window_end: '',
  start_at: '',
  end_at: '',
  max_in_flight: '',
  retry_after_secs: '',
};

export type Errors = Partial<Record<keyof CampaignDraft, string>>;

const HHMM = /^([01]\d|2[0-3]):[0-5]\d$/;
const E164ISH = /^\+?[\d\s().-]{7,20}$/;

function intIn(raw: string, lo: number, hi: number): boolean {
  if (raw.trim() === '') return true;
  const n = Number(raw);
  return Number.isInteger(n) && n >= lo && n <= hi;
}

/** Field errors of a draft; empty when the api would accept it. */
export function validate(d: CampaignDraft): Errors {
  const e: Errors = {};
  const voice = d.channel === 'voice';
  const name = d.name.trim();
  if (name.length === 0 || [...name].length > 200) e.name = 'Give the campaign a name (1 to 200 characters).';
  if (!d.list_id) e.list_id = 'Pick the contact list to send to.';
  if (!voice && d.template.trim() === '' && d.content_sid.trim() === '') e.template = 'Write the message.';
  if ([...d.template].length > 1600) e.template = 'At most 1600 characters.';
  if (d.from.trim() !== '' && !E164ISH.test(d.from.trim())) e.from = 'A phone number, like +14155550100.';
  if ((voice || d.channel === 'whatsapp') && d.from.trim() === '')
    e.from = voice ? 'A voice campaign needs a caller number.' : 'A WhatsApp campaign needs a WhatsApp sender number.';
  const rate = Number(d.rate_per_second);
  if (d.rate_per_second.trim() === '' || !Number.isFinite(rate) || (rate !== 0 && (rate < 0.001 || rate > 10000)))
    e.rate_per_second = '0 (as fast as allowed) or between 0.001 and 10000 per second.';
  else if (voice && rate > 100) e.rate_per_second = 'At most 100 calls per second.';
  if (!intIn(d.max_attempts, voice ? 1 : 1, voice ? 10 : 20))
    e.max_attempts = voice ? 'Between 1 and 10 dial attempts.' : 'Between 1 and 20 attempts.';
  if (d.content_sid.trim() !== '') {
    if (d.channel !== 'whatsapp') e.content_sid = 'Content templates are for WhatsApp campaigns.';
    else if (!/^HX[0-9a-fA-F]{32}$/.test(d.content_sid.trim())) e.content_sid = 'HX followed by 32 hex digits.';
  }
  if ((d.window_start === '') !== (d.window_end === '')) {
    e.window_end = 'Give both ends of the sending window, or neither.';
  } else {
    if (d.window_start && !HHMM.test(d.window_start)) e.window_start = 'A time of day as HH:MM.';
    if (d.window_end && !HHMM.test(d.window_end)) e.window_end = 'A time of day as HH:MM.';
  }
  if (d.start_at && Number.isNaN(Date.parse(d.start_at))) e.start_at = 'Not a date and time.';
  if (d.end_at && Number.isNaN(Date.parse(d.end_at))) e.end_at = 'Not a date and time.';
  if (d.start_at && d.end_at && Date.parse(d.end_at) <= Date.parse(d.start_at)) e.end_at = 'The end must come after the start.';
  if (voice) {
    if (!intIn(d.max_in_flight, 1, 100)) e.max_in_flight = 'Between 1 and 100 calls at once.';
    if (!intIn(d.retry_after_secs, 1, 604800)) e.retry_after_secs = 'Between 1 second and 7 days (604800).';
    if (d.agent_profile.trim() === '') e.agent_profile = 'Pick the agent profile that talks on the calls.';
  }
  return e;
}

/** The api request of a valid draft. */
export function toRequest(d: CampaignDraft): NewCampaign {
  const voice = d.channel === 'voice';
  const num = (s: string) => (s.trim() === '' ? 0 : Number(s));
  const iso = (s: string) => (s ? new Date(s).toISOString() : null);
  return {
    name: d.name.trim(),
    channel: d.channel,
    from: d.from.trim(),
    messaging_service_sid: '',
    list_id: d.list_id,
    template: d.template,
    content_sid: d.channel === 'whatsapp' ? d.content_sid.trim() : '',
    content_variables: {},
    rate_per_second: Number(d.rate_per_second),
    max_attempts: num(d.max_attempts),
    window_start: d.window_start,
    window_end: d.window_end,
    start_at: iso(d.start_at),
    end_at: iso(d.end_at),
    agent_profile: voice ? d.agent_profile.trim() : '',
    max_in_flight: voice ? num(d.max_in_flight) : 0,
    retry_after_secs: voice ? num(d.retry_after_secs) : 0,
  };
}
