// Agent profiles: what each of our numbers does, and the editor's form <-> the api's settings.
import type { Schemas } from '../api/client';

export interface NumberRole {
  number: string;
  roles: { text: string; profile?: string }[];
}

/** Each number we know with what it does: the agent profile answering it, and whether it is
 * the default sender. Sorted by number. */
export function numberRoles(profiles: Schemas['ProfileView'][], defaultFrom?: string | null): NumberRole[] {
  const by = new Map<string, NumberRole>();
  const get = (n: string) => {
    let r = by.get(n);
    if (!r) {
      r = { number: n, roles: [] };
      by.set(n, r);
    }
    return r;
  };
  for (const p of profiles) {
    for (const n of p.numbers) get(n).roles.push({ text: 'texts and calls answered by the agent profile', profile: p.name });
  }
  if (defaultFrom) {
    const r = get(defaultFrom);
    r.roles.unshift({ text: 'default sender of campaigns and single messages' });
    if (r.roles.length === 1) r.roles.push({ text: 'no agent answers texts; calls get the default profile' });
  }
  return [...by.values()].sort((a, b) => a.number.localeCompare(b.number));
}

/** The editor's form: the settings with lists as text (one item a line). */
export interface ProfileForm {
  settings: Schemas['ProfileSettings'];
  facts: string;
  numbers: string;
}

export function toForm(p: Schemas['ProfileView']): ProfileForm {
  return { settings: { ...p.settings }, facts: p.settings.facts.join('\n'), numbers: p.numbers.join('\n') };
}

/** Lines of a textarea, trimmed, blank ones left out; commas also separate numbers. */
export function lines(text: string, commas = false): string[] {
  return text
    .split(commas ? /[\n,]/ : /\n/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** What the form says, as the api takes it. Empty optional texts become null. */
export function fromForm(f: ProfileForm): { settings: Schemas['ProfileSettings']; numbers: string[] } {
  const opt = (v: string | null | undefined) => (v && v.trim() ? v : null);
  return {
    settings: {
      ...f.settings,
      greeting: opt(f.settings.greeting),
      voice: opt(f.settings.voice),
      transfer_number: opt(f.settings.transfer_number),
      rules_toml: opt(f.settings.rules_toml),
      facts: lines(f.facts),
    },
    numbers: lines(f.numbers, true),
  };
}

/** Which settings differ between two versions (for the history). */
export function changedFields(a: Schemas['ProfileView'], b: Schemas['ProfileView']): string[] {
  const out: string[] = [];
  const sa = a.settings as unknown as Record<string, unknown>;
  const sb = b.settings as unknown as Record<string, unknown>;
  for (const k of Object.keys({ ...sa, ...sb })) {
    if (JSON.stringify(sa[k] ?? null) !== JSON.stringify(sb[k] ?? null)) out.push(k);
  }
  if (JSON.stringify(a.numbers) !== JSON.stringify(b.numbers)) out.push('numbers');
  return out.sort();
}
