import { describe, expect, it } from 'vitest';
import type { Schemas } from '../api/client';
import { changedFields, fromForm, lines, numberRoles, toForm } from './profiles';

const settings: Schemas['ProfileSettings'] = {
  instructions: 'Be brief.',
  greeting: 'Hello!',
  language: 'en-US',
  voice: null,
  facts: ['Open 9-5'],
  max_turns: 30,
  max_reply_chars: 600,
  timeout_secs: 20,
  fallback_reply: 'Sorry.',
  closing: 'Bye.',
  transfer_number: null,
  transfer_message: 'One moment.',
  reprompt: 'Again?',
  max_silences: 2,
  callback_message: 'Hi again.',
  summary_after_idle_secs: 600,
  turns_per_run: 100,
  idle_close_secs: 86400,
  rules_toml: null,
  voice_mode: 'gather',
  relay: {
    tts_provider: null,
    transcription_provider: null,
    speech_model: null,
    interruptible: 'any',
    welcome_greeting_interruptible: 'any',
    dtmf_detection: true,
  },
};

function view(name: string, numbers: string[], version = 1): Schemas['ProfileView'] {
  return { name, version, numbers, settings, source: 'api', created_by: 'ada@example.com', created_at: '2026-12-03T10:00:00Z' };
}

describe('numberRoles', () => {
  it('lists each number once with every role, the default sender first', () => {
    const rows = numberRoles([view('reception', ['+15005550006']), view('sales', ['+15005550007'])], '+15005550006');
    expect(rows.map((r) => r.number)).toEqual(['+15005550006', '+15005550007']);
    expect(rows[0]!.roles.map((r) => r.profile ?? r.text)).toEqual([
      'default sender of campaigns and single messages',
      'reception',
    ]);
  });

  it('says a default sender without a profile has no agent on texts', () => {
    const rows = numberRoles([], '+15005550006');
    expect(rows[0]!.roles[1]!.text).toMatch(/no agent answers texts/);
  });
});

describe('the profile form', () => {
  it('turns lines into lists and blank optional texts into null', () => {
    const form = toForm(view('reception', ['+15005550006']));
    form.facts = 'Open 9-5\n\n  Closed on Sundays  \n';
    form.numbers = '+15005550006, +15005550007\n';
    form.settings.voice = '   ';
    form.settings.greeting = 'Hi {{first_name}}';
    const out = fromForm(form);
    expect(out.settings.facts).toEqual(['Open 9-5', 'Closed on Sundays']);
    expect(out.numbers).toEqual(['+15005550006', '+15005550007']);
    expect(out.settings.voice).toBeNull();
    expect(out.settings.greeting).toBe('Hi {{first_name}}');
  });

  it('names what changed between versions', () => {
    const a = view('reception', ['+15005550006'], 1);
    const b = { ...view('reception', [], 2), settings: { ...settings, greeting: 'Hi!' } };
    expect(changedFields(a, b)).toEqual(['greeting', 'numbers']);
    expect(lines('a,b\nc', true)).toEqual(['a', 'b', 'c']);
  });
});
