import { useDeferredValue, useEffect, useRef, useState, type FormEvent } from 'react';
import { useInfiniteQuery, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useVirtualizer } from '@tanstack/react-virtual';
import { useNavigate, useParams, Link } from 'react-router';
import { api, data, ApiError, type Schemas } from '../api/client';
import { csrfToken, signedOut } from '../lib/auth';
import { Empty, ErrorNote, Loading } from '../components/States';
import { useCan } from '../lib/role';

type Upload = Schemas['UploadView'];
type Preview = Schemas['PreviewView'];

/** Which sheet and phone column to read; the api finds them when empty. */
interface Choice {
  sheet?: string;
  phone_column?: string;
}

/** Posts the file with XMLHttpRequest: fetch cannot report upload progress. `preview` reads
 * it without importing. */
function uploadFile<T = Upload>(
  listId: string,
  file: File,
  onProgress: (fraction: number) => void,
  choice: Choice = {},
  preview = false,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/api/contact-lists/${encodeURIComponent(listId)}/uploads${preview ? '/preview' : ''}`);
    xhr.responseType = 'json';
    xhr.setRequestHeader('X-CSRF-Token', csrfToken());
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response as T);
      else {
        if (xhr.status === 401) signedOut();
        const retry = xhr.getResponseHeader('Retry-After');
        const message = (xhr.response as { error?: string } | null)?.error ?? `${xhr.status} ${xhr.statusText}`;
        reject(new ApiError(xhr.status, retry ? `${message} (try again in ${retry} s)` : message));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, 'The upload was cut off; check the connection and try again.'));
    const form = new FormData();
    form.append('file', file);
    if (choice.sheet) form.append('sheet', choice.sheet);
    if (choice.phone_column) form.append('phone_column', choice.phone_column);
    xhr.send(form);
  });
}

function UploadReport({ report }: { report: Upload }) {
  return (
    <div className="panel" aria-live="polite">
      <h3>Imported {report.file_name}</h3>
      <p>
        {report.rows.toLocaleString()} rows: <strong>{report.imported.toLocaleString()} imported</strong>,{' '}
        {report.merged.toLocaleString()} merged with contacts already on the list,{' '}
        <strong>{report.rejected.toLocaleString()} rejected</strong>
        {report.sheet && <> (sheet “{report.sheet}”)</>}.
      </p>
      {report.rejected > 0 && (
        <>
          <p>
            <a href={report.report_csv} download>
              Download the rejected rows (CSV)
            </a>
          </p>
          <table>
            <caption>Rejected rows</caption>
            <thead>
              <tr>
                <th scope="col" className="num">
                  Row
                </th>
                <th scope="col">Column</th>
                <th scope="col">Value</th>
                <th scope="col">Why</th>
              </tr>
            </thead>
            <tbody>
              {report.rejected_rows.slice(0, 200).map((r) => (
                <tr key={`${r.row}-${r.column}`}>
                  <td className="num">{r.row}</td>
                  <td>{r.column}</td>
                  <td>
                    <code>{r.value}</code>
                  </td>
                  <td>{r.reason}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {report.rejected_rows.length > 200 && <p className="muted">The first 200 are shown; the CSV has them all.</p>}
        </>
      )}
    </div>
  );
}

function Contacts({ listId }: { listId: string }) {
  const [search, setSearch] = useState('');
  const term = useDeferredValue(search.trim());
  const byPhone = /^\+?[\d\s]+$/.test(term);
  const contacts = useInfiniteQuery({
    queryKey: ['contacts', listId, term],
    queryFn: ({ pageParam }) =>
      data(
        api.GET('/api/contact-lists/{id}/contacts', {
          params: {
            path: { id: listId },
            query: { page_size: 200, page_token: pageParam, ...(term ? (byPhone ? { phone: term } : { name: term }) : {}) },
          },
        }),
      ),
    initialPageParam: '',
    getNextPageParam: (last) => last.next_page_token || undefined,
  });
  const rows = contacts.data?.pages.flatMap((p) => p.contacts) ?? [];
  const scroller = useRef<HTMLDivElement>(null);
  const virtual = useVirtualizer({
    count: rows.length,
    getScrollElement: () => scroller.current,
    estimateSize: () => 40,
    overscan: 10,
  });
  const items = virtual.getVirtualItems();
  const lastIndex = items.at(-1)?.index ?? 0;
  useEffect(() => {
    if (lastIndex >= rows.length - 20 && contacts.hasNextPage && !contacts.isFetchingNextPage) contacts.fetchNextPage();
  }, [lastIndex, rows.length, contacts]);
  return (
    <div className="panel">
      <h2>Contacts</h2>
      <label className="search">
        Search by name or number
        <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} maxLength={100} />
      </label>
      {contacts.isPending ? (
        <Loading />
      ) : contacts.error ? (
        <ErrorNote error={contacts.error} retry={() => contacts.refetch()} />
      ) : rows.length === 0 ? (
        <Empty>{term ? 'No contact matches.' : 'No contacts yet: upload a file above.'}</Empty>
      ) : (
        <div ref={scroller} className="virtual" role="table" aria-label="Contacts" aria-rowcount={rows.length} tabIndex={0}>
          <div style={{ height: virtual.getTotalSize(), position: 'relative' }} role="rowgroup">
            {items.map((v) => {
              const c = rows[v.index]!;
              const vars = Object.entries(c.variables);
              return (
                <div
                  key={c.id}
                  role="row"
                  aria-rowindex={v.index + 1}
                  className="vrow"
                  style={{ transform: `translateY(${v.start}px)`, height: v.size }}
                >
                  <span role="cell" className="phone">
                    <Link to={`/lists/${c.list_id}/contacts/${c.id}`}>{c.phone}</Link>
                  </span>
                  <span role="cell">{c.name ?? [c.first_name, c.last_name].filter(Boolean).join(' ')}</span>
                  <span role="cell" className="muted small">
                    {vars.slice(0, 3).map(([k, val]) => `${k}: ${val}`).join(' · ')}
                  </span>
                </div>
              );
            })}
          </div>
        </div>
      )}
      {contacts.isFetchingNextPage && <Loading what="Loading more" />}
    </div>
  );
}

/** What the file holds, before anything is imported: a chance to pick another sheet or phone
 * column. */
function PreviewPanel({
  file,
  preview,
  busy,
  onChoose,
  onImport,
  onCancel,
}: {
  file: File;
  preview: Preview;
  busy: boolean;
  onChoose: (c: Choice) => void;
  onImport: () => void;
  onCancel: () => void;
}) {
  const headers = preview.columns.filter((c) => c.kind !== 'ignored').map((c) => c.header);
  return (
    <div className="panel" aria-label="Preview">
      <h2>Before importing {file.name}</h2>
      <div className="inline">
        {preview.sheets.length > 1 && (
          <label>
            Sheet
            <select
              value={preview.sheet ?? ''}
              disabled={busy}
              onChange={(e) => onChoose({ sheet: e.target.value, phone_column: undefined })}
            >
              {preview.sheets.map((s) => (
                <option key={s}>{s}</option>
              ))}
            </select>
          </label>
        )}
        <label>
          Phone column
          <select
            value={preview.phone_column ?? ''}
            disabled={busy}
            onChange={(e) => onChoose({ sheet: preview.sheet ?? undefined, phone_column: e.target.value })}
          >
            {headers.map((h) => (
              <option key={h}>{h}</option>
            ))}
          </select>
        </label>
      </div>
      <p>
        {preview.rows.toLocaleString()} rows: {preview.contacts.toLocaleString()} contacts to import or update,{' '}
        {preview.rejected.toLocaleString()} rows to reject.
      </p>
      <div className="scroll-x">
        <table aria-label="Columns">
          <thead>
            <tr>
              <th scope="col">Column</th>
              <th scope="col">Becomes</th>
            </tr>
          </thead>
          <tbody>
            {preview.columns.map((c) => (
              <tr key={c.header}>
                <td>{c.header}</td>
                <td>
                  {c.kind === 'field' ? (
                    <>the contact’s {c.name?.replace(/_/g, ' ')}</>
                  ) : c.kind === 'variable' ? (
                    <>
                      the variable <code>{`{{${c.name}}}`}</code>
                    </>
                  ) : (
                    <span className="muted">not imported</span>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {preview.sample.length > 0 && (
        <>
          <h3>First contacts</h3>
          <ul className="plain small">
            {preview.sample.map((c) => (
              <li key={c.phone}>
                <span className="phone">{c.phone}</span> {c.name}
              </li>
            ))}
          </ul>
        </>
      )}
      <div className="actions">
        <button type="button" onClick={onImport} disabled={busy || preview.contacts === 0}>
          Import {preview.contacts.toLocaleString()} contacts
        </button>
        <button type="button" className="secondary" onClick={onCancel} disabled={busy}>
          Choose another file
        </button>
      </div>
    </div>
  );
}

export default function ContactList() {
  const { id = '' } = useParams();
  const client = useQueryClient();
  const navigate = useNavigate();
  const list = useQuery({
    queryKey: ['list', id],
    queryFn: () => data(api.GET('/api/contact-lists/{id}', { params: { path: { id } } })),
  });
  const [progress, setProgress] = useState<number | null>(null);
  const [report, setReport] = useState<Upload | null>(null);
  const [file, setFile] = useState<File | null>(null);
  const [choice, setChoice] = useState<Choice>({});
  // The file goes up once, with its first preview; the api keeps it, and another sheet or
  // phone column, then the import, name it by the preview's token.
  const preview = useMutation({
    mutationFn: (v: { file: File; choice: Choice; token?: string }) =>
      v.token
        ? data(
            api.POST('/api/contact-lists/{id}/pending-uploads/{token}/preview', {
              params: { path: { id, token: v.token } },
              body: { sheet: v.choice.sheet ?? null, phone_column: v.choice.phone_column ?? null },
            }),
          )
        : uploadFile<Preview>(id, v.file, setProgress, v.choice, true),
    onSettled: () => setProgress(null),
  });
  const choose = (f: File, c: Choice, token?: string) => {
    upload.reset();
    setFile(f);
    setChoice(c);
    preview.mutate({ file: f, choice: c, token });
  };
  const upload = useMutation({
    mutationFn: (v: { file: File; choice: Choice; token?: string | null }) =>
      v.token
        ? data(
            api.POST('/api/contact-lists/{id}/pending-uploads/{token}/import', {
              params: { path: { id, token: v.token } },
              body: { sheet: v.choice.sheet ?? null, phone_column: v.choice.phone_column ?? null },
            }),
          )
        : uploadFile(id, v.file, setProgress, v.choice),
    onSuccess: (r) => {
      setReport(r);
      setFile(null);
      preview.reset();
      client.invalidateQueries({ queryKey: ['list', id] });
      client.invalidateQueries({ queryKey: ['contacts', id] });
      client.invalidateQueries({ queryKey: ['lists'] });
    },
    onSettled: () => setProgress(null),
  });
  const [name, setName] = useState<string | null>(null);
  const rename = useMutation({
    mutationFn: (name: string) => data(api.PATCH('/api/contact-lists/{id}', { params: { path: { id } }, body: { name } })),
    onSuccess: () => {
      setName(null);
      client.invalidateQueries({ queryKey: ['list', id] });
      client.invalidateQueries({ queryKey: ['lists'] });
    },
  });
  const remove = useMutation({
    mutationFn: () => data(api.DELETE('/api/contact-lists/{id}', { params: { path: { id } } })),
    onSuccess: () => {
      client.invalidateQueries({ queryKey: ['lists'] });
      navigate('/lists');
    },
  });
  const canManage = useCan('manager');
  if (list.isPending) return <Loading />;
  if (list.error) return <ErrorNote error={list.error} retry={() => list.refetch()} />;
  const l = list.data;
  const onRename = (e: FormEvent) => {
    e.preventDefault();
    if (name?.trim()) rename.mutate(name.trim());
  };
  return (
    <section>
      {name === null ? (
        <div className="title-row">
          <h1>{l.name}</h1>
          {canManage && (
            <>
              <button type="button" className="secondary" onClick={() => setName(l.name)}>
                Rename
              </button>
              <button
                type="button"
                className="danger"
                onClick={() => window.confirm(`Delete “${l.name}” and its ${l.contact_count} contacts?`) && remove.mutate()}
              >
                Delete
              </button>
            </>
          )}
        </div>
      ) : (
        <form className="inline" onSubmit={onRename}>
          <label>
            List name
            <input value={name} onChange={(e) => setName(e.target.value)} maxLength={200} autoFocus />
          </label>
          <button type="submit" disabled={rename.isPending}>
            Save
          </button>
          <button type="button" className="secondary" onClick={() => setName(null)}>
            Cancel
          </button>
        </form>
      )}
      {rename.error && <ErrorNote error={rename.error} />}
      {remove.error && <ErrorNote error={remove.error} />}
      <p className="muted">{l.contact_count.toLocaleString()} contacts</p>
      {canManage && (
        <div className="panel">
          <h2>Upload contacts</h2>
          <p className="muted small">
            An Excel (.xlsx) or CSV file with a phone column; other columns become variables for templates. Rows that cannot
            be imported are listed after the upload, and nothing else is lost.
          </p>
          <label className="file">
            File
            <input
              type="file"
              accept=".xlsx,.csv,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
              disabled={upload.isPending || preview.isPending}
              onChange={(e) => {
                const f = e.target.files?.[0];
                if (f) {
                  setReport(null);
                  choose(f, {});
                }
                e.target.value = '';
              }}
            />
          </label>
          {progress !== null && (
            <div className="bar" role="progressbar" aria-label="Upload" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(progress * 100)}>
              <span style={{ width: `${progress * 100}%` }} />
            </div>
          )}
          {preview.isPending && progress !== null && progress >= 1 && <Loading what="Reading the file" />}
          {upload.isPending && progress !== null && progress >= 1 && <Loading what="Importing" />}
          {preview.error && <ErrorNote error={preview.error} />}
          {upload.error && <ErrorNote error={upload.error} />}
        </div>
      )}
      {file && preview.data && !upload.isSuccess && (
        <PreviewPanel
          file={file}
          preview={preview.data}
          busy={preview.isPending || upload.isPending}
          onChoose={(c) => choose(file, c, preview.data.token ?? undefined)}
          onImport={() =>
            upload.mutate({
              file,
              token: preview.data.token,
              choice: { sheet: preview.data.sheet ?? undefined, ...choice, phone_column: preview.data.phone_column ?? choice.phone_column },
            })
          }
          onCancel={() => {
            setFile(null);
            preview.reset();
          }}
        />
      )}
      {report && <UploadReport report={report} />}
      <Contacts listId={id} />
    </section>
  );
}
