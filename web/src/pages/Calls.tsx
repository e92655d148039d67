import { useState, type FormEvent } from 'react';
import { useInfiniteQuery, useMutation } from '@tanstack/react-query';
import { Link, useNavigate, useSearchParams } from 'react-router';
import { api, data } from '../api/client';
import { Badge, Empty, ErrorNote, Loading, when } from '../components/States';
import { useCan } from '../lib/role';

const OUTCOMES = ['human', 'machine', 'voicemail_left', 'busy', 'no_answer', 'failed', 'canceled', 'opted_out', 'completed'];

function PlaceCall() {
  const [to, setTo] = useState('');
  const [profile, setProfile] = useState('');
  const navigate = useNavigate();
  const place = useMutation({
    mutationFn: () => data(api.POST('/api/calls', { body: { to: to.trim(), profile: profile.trim() || null } })),
    onSuccess: (r) => navigate(`/calls/${r.call_id}`),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (to.trim()) place.mutate();
  };
  return (
    <form className="inline panel" onSubmit={submit}>
      <label>
        Call number
        <input value={to} onChange={(e) => setTo(e.target.value)} inputMode="tel" placeholder="+14155550100" />
      </label>
      <label>
        Agent profile
        <input value={profile} onChange={(e) => setProfile(e.target.value)} placeholder="our number's" />
      </label>
      <button type="submit" disabled={!to.trim() || place.isPending}>
        Place call
      </button>
      {place.error && <ErrorNote error={place.error} />}
    </form>
  );
}

export default function Calls() {
  const [params, setParams] = useSearchParams();
  const canManage = useCan('manager');
  const outcome = params.get('outcome') ?? '';
  const calls = useInfiniteQuery({
    queryKey: ['calls', outcome],
    queryFn: ({ pageParam }) =>
      data(
        api.GET('/api/calls', {
          params: { query: { page_size: 50, page_token: pageParam || undefined, outcome: outcome || undefined } },
        }),
      ),
    initialPageParam: '',
    getNextPageParam: (last) => last.next_page_token || undefined,
    refetchInterval: 30_000,
  });
  const rows = calls.data?.pages.flatMap((p) => p.calls) ?? [];
  return (
    <section>
      <h1>Calls</h1>
      {canManage && <PlaceCall />}
      <label className="search">
        Outcome
        <select value={outcome} onChange={(e) => setParams(e.target.value ? { outcome: e.target.value } : {})}>
          <option value="">Any</option>
          {OUTCOMES.map((o) => (
            <option key={o} value={o}>
              {o.replace(/_/g, ' ')}
            </option>
          ))}
        </select>
      </label>
      {calls.isPending ? (
        <Loading />
      ) : calls.error ? (
        <ErrorNote error={calls.error} retry={() => calls.refetch()} />
      ) : rows.length === 0 ? (
        <Empty>No calls{outcome ? ' with this outcome' : ''} yet.</Empty>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">With</th>
              <th scope="col">Direction</th>
              <th scope="col">Outcome</th>
              <th scope="col">Answered by</th>
              <th scope="col" className="num">
                Duration
              </th>
              <th scope="col">Started</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((c) => (
              <tr key={c.id}>
                <td>
                  <Link to={`/calls/${c.call_id}`}>{c.direction === 'inbound' ? c.from : c.to}</Link>
                </td>
                <td>{c.direction}</td>
                <td>
                  <Badge status={c.outcome ?? c.status} />
                </td>
                <td>{c.answered_by ?? '—'}</td>
                <td className="num">{c.duration_secs != null ? `${c.duration_secs} s` : '—'}</td>
                <td>{when(c.started_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {calls.hasNextPage && (
        <button type="button" onClick={() => calls.fetchNextPage()} disabled={calls.isFetchingNextPage}>
          More calls
        </button>
      )}
    </section>
  );
}
