import { useDeferredValue, useEffect, useRef, useState, type FormEvent } from 'react';
import { useInfiniteQuery, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useVirtualizer } from '@tanstack/react-virtual';
import { useNavigate, useParams, Link } from 'react-router';
import { api, data, ApiError, type Schemas } from '../api/client';
import { csrfToken, signedOut } from '../lib/auth';
import { Empty, ErrorNote, Loading } from '../components/States';

type Upload = Schemas['UploadView'];

/** Posts the file with XMLHttpRequest: fetch cannot report upload progress. */
function uploadFile(listId: string, file: File, onProgress: (fraction: number) => void): Promise<Upload> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/api/contact-lists/${encodeURIComponent(listId)}/uploads`);
    xhr.responseType = 'json';
    xhr.setRequestHeader('X-CSRF-Token', csrfToken());
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response as Upload);
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
  const upload = useMutation({
    mutationFn: (file: File) => uploadFile(id, file, setProgress),
    onSuccess: (r) => {
      setReport(r);
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
            disabled={upload.isPending}
            onChange={(e) => {
              const f = e.target.files?.[0];
              if (f) {
                setReport(null);
                upload.mutate(f);
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
        {upload.isPending && progress !== null && progress >= 1 && <Loading what="Importing" />}
        {upload.error && <ErrorNote error={upload.error} />}
      </div>
      {report && <UploadReport report={report} />}
      <Contacts listId={id} />
    </section>
  );
}
