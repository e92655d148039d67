import { useState, type FormEvent } from 'react';
import { useInfiniteQuery, useMutation, useQueryClient } from '@tanstack/react-query';
import { Link, useNavigate } from 'react-router';
import { api, data } from '../api/client';
import { Empty, ErrorNote, Loading, when } from '../components/States';
import { useCan } from '../lib/role';

export default function ContactLists() {
  const lists = useInfiniteQuery({
    queryKey: ['lists'],
    queryFn: ({ pageParam }) =>
      data(api.GET('/api/contact-lists', { params: { query: { page_size: 100, page_token: pageParam } } })),
    initialPageParam: '',
    getNextPageParam: (last) => last.next_page_token || undefined,
  });
  const [name, setName] = useState('');
  const client = useQueryClient();
  const navigate = useNavigate();
  const create = useMutation({
    mutationFn: (name: string) => data(api.POST('/api/contact-lists', { body: { name } })),
    onSuccess: (list) => {
      client.invalidateQueries({ queryKey: ['lists'] });
      navigate(`/lists/${list.id}`);
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (name.trim()) create.mutate(name.trim());
  };
  const all = lists.data?.pages.flatMap((p) => p.lists) ?? [];
  const canManage = useCan('manager');
  return (
    <section>
      <h1>Contact lists</h1>
      {canManage && (
        <form className="inline" onSubmit={submit}>
          <label>
            New list
            <input value={name} onChange={(e) => setName(e.target.value)} maxLength={200} placeholder="Spring customers" />
          </label>
          <button type="submit" disabled={!name.trim() || create.isPending}>
            Create list
          </button>
        </form>
      )}
      {create.error && <ErrorNote error={create.error} />}
      {lists.isPending ? (
        <Loading />
      ) : lists.error ? (
        <ErrorNote error={lists.error} retry={() => lists.refetch()} />
      ) : all.length === 0 ? (
        <Empty>No contact lists yet. Create one, then upload an Excel or CSV file to it.</Empty>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col" className="num">
                Contacts
              </th>
              <th scope="col">Changed</th>
            </tr>
          </thead>
          <tbody>
            {all.map((l) => (
              <tr key={l.id}>
                <td>
                  <Link to={`/lists/${l.id}`}>{l.name}</Link>
                </td>
                <td className="num">{l.contact_count.toLocaleString()}</td>
                <td>{when(l.updated_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {lists.hasNextPage && (
        <button type="button" onClick={() => lists.fetchNextPage()} disabled={lists.isFetchingNextPage}>
          More lists
        </button>
      )}
    </section>
  );
}
