import { useMemo, useRef, useState, type FormEvent, type ReactNode } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useNavigate } from 'react-router';
import { api, data } from '../api/client';
import { emptyDraft, toRequest, validate, type CampaignDraft, type Errors } from '../lib/campaignForm';
import { contactVariables, render, smsSegments, templateVariables } from '../lib/template';
import { ErrorNote } from '../components/States';
import { useCan } from '../lib/role';
import { NotAllowed } from '../components/NotAllowed';

function Field({
  id,
  label,
  hint,
  error,
  touched,
  children,
}: {
  id: keyof CampaignDraft;
  label: string;
  hint?: string;
  error?: string;
  touched: boolean;
  children: ReactNode;
}) {
  const show = touched && error;
  return (
    <div className={`field${show ? ' invalid' : ''}`}>
      <label htmlFor={id}>{label}</label>
      {children}
      {hint && (
        <p className="muted small" id={`${id}-hint`}>
          {hint}
        </p>
      )}
      {show && (
        <p className="field-error" id={`${id}-error`} role="alert">
          {error}
        </p>
      )}
    </div>
  );
}

export default function CampaignNew() {
  const canManage = useCan('manager');
  if (!canManage) return <NotAllowed title="New campaign" />;
  return <CampaignForm />;
}

function CampaignForm() {
  const [d, setD] = useState<CampaignDraft>(emptyDraft);
  const [touched, setTouched] = useState<Partial<Record<keyof CampaignDraft, boolean>>>({});
  const [submitted, setSubmitted] = useState(false);
  const errors: Errors = useMemo(() => validate(d), [d]);
  const lists = useQuery({
    queryKey: ['lists', 'all'],
    queryFn: () => data(api.GET('/api/contact-lists', { params: { query: { page_size: 1000 } } })),
  });
  const sample = useQuery({
    queryKey: ['contacts', d.list_id, 'sample'],
    enabled: d.list_id !== '',
    queryFn: () =>
      data(api.GET('/api/contact-lists/{id}/contacts', { params: { path: { id: d.list_id }, query: { page_size: 1 } } })),
  });
  const client = useQueryClient();
  const navigate = useNavigate();
  // The campaign this form created: pressing again after a failed start (or a lost answer)
  // starts that one instead of creating a second campaign on the same list.
  const created = useRef<{ id: string; draft: CampaignDraft } | null>(null);
  const create = useMutation({
    mutationFn: async (start: boolean) => {
      const again = created.current?.draft === d ? created.current.id : null;
      const id = again ?? (await data(api.POST('/api/campaigns', { body: toRequest(d) }))).id;
      created.current = { id, draft: d };
      if (start) await data(api.POST('/api/campaigns/{id}/start', { params: { path: { id } } }));
      return { id };
    },
    onSuccess: (c) => {
      client.invalidateQueries({ queryKey: ['campaigns'] });
      navigate(`/campaigns/${c.id}`);
    },
  });
  const set =
    (k: keyof CampaignDraft) =>
    (e: { target: { value: string } }) =>
      setD((old) => ({ ...old, [k]: e.target.value }));
  const blur = (k: keyof CampaignDraft) => () => setTouched((t) => ({ ...t, [k]: true }));
  const props = (k: keyof CampaignDraft) => ({
    id: k,
    name: k,
    value: d[k],
    onChange: set(k),
    onBlur: blur(k),
    'aria-invalid': Boolean((touched[k] || submitted) && errors[k]),
    'aria-describedby': (touched[k] || submitted) && errors[k] ? `${k}-error` : undefined,
  });
  const field = (k: keyof CampaignDraft) => ({ id: k, error: errors[k], touched: Boolean(touched[k] || submitted) });
  const voice = d.channel === 'voice';
  const contact = sample.data?.contacts[0];
  const preview = contact ? render(d.template, contactVariables(contact)) : render(d.template, {});
  const seg = smsSegments(preview);
  const missing = contact
    ? templateVariables(d.template).filter((v) => render(`{{${v}}}`, contactVariables(contact)) === '')
    : [];
  const submit = (start: boolean) => (e?: FormEvent) => {
    e?.preventDefault();
    setSubmitted(true);
    if (Object.keys(errors).length === 0) create.mutate(start);
  };
  return (
    <section>
      <h1>New campaign</h1>
      <form className="form" onSubmit={submit(false)} noValidate>
        <Field {...field('name')} label="Name">
          <input {...props('name')} maxLength={200} />
        </Field>
        <Field {...field('channel')} label="Channel">
          <select {...props('channel')}>
            <option value="sms">SMS</option>
            <option value="whatsapp">WhatsApp</option>
            <option value="voice">Voice calls with an agent</option>
          </select>
        </Field>
        <Field {...field('list_id')} label="Contact list">
          <select {...props('list_id')}>
            <option value="">{lists.isPending ? 'Loading lists…' : 'Pick a list'}</option>
            {lists.data?.lists.map((l) => (
              <option key={l.id} value={l.id}>
                {l.name} ({l.contact_count.toLocaleString()})
              </option>
            ))}
          </select>
        </Field>
        {lists.error && <ErrorNote error={lists.error} />}
        <Field {...field('from')} label={voice ? 'Caller number' : 'Sender number'} hint="Empty: the configured default sender.">
          <input {...props('from')} inputMode="tel" placeholder="+14155550100" />
        </Field>
        {voice && (
          <Field {...field('agent_profile')} label="Agent profile" hint="A profile of the agents file.">
            <input {...props('agent_profile')} />
          </Field>
        )}
        <Field
          {...field('template')}
          label={voice ? 'Voicemail (optional)' : 'Message'}
          hint="Use {{first_name}} or any column of the list as {{column name}}."
        >
          <textarea {...props('template')} rows={4} maxLength={1600} />
        </Field>
        {!voice && d.template && (
          <div className="preview" aria-live="polite">
            <p className="muted small">{contact ? `Preview for ${contact.phone}` : 'Preview'}</p>
            <p className="bubble">{preview || <em>(empty)</em>}</p>
            {d.channel === 'sms' && (
              <p className="muted small">
                {seg.encoding}, {seg.segments} segment{seg.segments === 1 ? '' : 's'} ({seg.remaining} characters left in the last)
              </p>
            )}
            {missing.length > 0 && <p className="warn small">This contact has no {missing.join(', ')}: it renders as nothing.</p>}
          </div>
        )}
        {d.channel === 'whatsapp' && (
          <Field {...field('content_sid')} label="Content template SID (outside the 24-hour window)">
            <input {...props('content_sid')} placeholder="HX…" />
          </Field>
        )}
        <div className="row">
          <Field {...field('rate_per_second')} label={voice ? 'Calls per second' : 'Messages per second'} hint="0: as fast as allowed.">
            <input {...props('rate_per_second')} inputMode="decimal" />
          </Field>
          <Field {...field('max_attempts')} label="Attempts" hint={voice ? 'Empty: 3.' : 'Empty: 5.'}>
            <input {...props('max_attempts')} inputMode="numeric" />
          </Field>
          {voice && (
            <>
              <Field {...field('max_in_flight')} label="Calls at once" hint="Empty: 5.">
                <input {...props('max_in_flight')} inputMode="numeric" />
              </Field>
              <Field {...field('retry_after_secs')} label="Seconds between attempts" hint="Empty: 3600.">
                <input {...props('retry_after_secs')} inputMode="numeric" />
              </Field>
            </>
          )}
        </div>
        <div className="row">
          <Field {...field('window_start')} label="Window opens" hint="Recipient's local time, HH:MM.">
            <input {...props('window_start')} placeholder="09:00" />
          </Field>
          <Field {...field('window_end')} label="Window closes">
            <input {...props('window_end')} placeholder="20:00" />
          </Field>
          <Field {...field('start_at')} label="Start at">
            <input {...props('start_at')} type="datetime-local" />
          </Field>
          <Field {...field('end_at')} label="End at">
            <input {...props('end_at')} type="datetime-local" />
          </Field>
        </div>
        {create.error && <ErrorNote error={create.error} />}
        {submitted && Object.keys(errors).length > 0 && (
          <p className="field-error" role="alert">
            Fix the fields marked above.
          </p>
        )}
        <div className="actions">
          <button type="button" onClick={() => submit(true)()} disabled={create.isPending}>
            Create and start
          </button>
          <button type="submit" className="secondary" disabled={create.isPending}>
            Save as draft
          </button>
        </div>
      </form>
    </section>
  );
}
