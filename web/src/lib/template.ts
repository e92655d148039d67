// The campaign template as the worker renders it (activities/src/template.rs), and what an
// SMS of the result costs: its encoding and number of segments.

/** A contact's fields as the worker offers them to a template. */
export interface TemplateContact {
  phone: string;
  name?: string | null;
  first_name?: string | null;
  last_name?: string | null;
  email?: string | null;
  language?: string | null;
  variables?: Record<string, string>;
}

/** `Renewal Date` → `renewal_date`, like the import stores column names. */
export function variableKey(name: string): string {
  let key = '';
  for (const c of name.trim().toLowerCase()) {
    if (/[\p{L}\p{N}]/u.test(c)) key += c;
    else if (!key.endsWith('_')) key += '_';
  }
  return key.replace(/^_+|_+$/g, '');
}

export function contactVariables(c: TemplateContact): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const field of ['name', 'first_name', 'last_name', 'email', 'phone', 'language'] as const) {
    const v = c[field];
    if (typeof v === 'string') vars[field] = v;
  }
  for (const [k, v] of Object.entries(c.variables ?? {})) {
    if (!(k in vars)) vars[k] = v;
  }
  return vars;
}

/** Fills `{{name}}` placeholders; an unknown variable renders as nothing. */
export function render(template: string, vars: Record<string, string>): string {
  let out = '';
  let rest = template;
  for (;;) {
    const start = rest.indexOf('{{');
    if (start < 0) break;
    out += rest.slice(0, start);
    const after = rest.slice(start + 2);
    const end = after.indexOf('}}');
    if (end < 0) {
      out += rest.slice(start);
      rest = '';
      break;
    }
    const key = after.slice(0, end).trim();
    out += vars[key] ?? vars[variableKey(key)] ?? '';
    rest = after.slice(end + 2);
  }
  return out + rest;
}

/** The variables a template uses, in order of first use. */
export function templateVariables(template: string): string[] {
  const names: string[] = [];
  for (const m of template.matchAll(/\{\{(.*?)\}\}/g)) {
    const key = (m[1] ?? '').trim();
    if (key && !names.includes(key)) names.push(key);
  }
  return names;
}

// GSM 03.38 basic set and the extension table (each extension character costs two septets).
const GSM_BASIC =
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';
const GSM_EXTENDED = '^{}\\[~]|€\f';

export interface Segments {
  encoding: 'GSM-7' | 'UCS-2';
  /** Septets (GSM-7) or UTF-16 code units (UCS-2). */
  units: number;
  segments: number;
  /** Units left in the last segment. */
  remaining: number;
}

/** How an SMS of `text` is encoded and how many segments it is billed as. */
export function smsSegments(text: string): Segments {
  let septets = 0;
  let gsm = true;
  for (const c of text) {
    if (GSM_BASIC.includes(c)) septets += 1;
    else if (GSM_EXTENDED.includes(c)) septets += 2;
    else {
      gsm = false;
      break;
    }
  }
  if (gsm) {
    const segments = septets <= 160 ? 1 : Math.ceil(septets / 153);
    const per = segments === 1 ? 160 : 153;
    return { encoding: 'GSM-7', units: septets, segments: septets === 0 ? 0 : segments, remaining: per * Math.max(segments, 1) - septets };
  }
  const units = text.length;
  const segments = units <= 70 ? 1 : Math.ceil(units / 67);
  const per = segments === 1 ? 70 : 67;
  return { encoding: 'UCS-2', units, segments, remaining: per * segments - units };
}
