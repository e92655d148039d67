import { NEEDS_MANAGER } from '../lib/role';

/** A page whose only purpose is a change the signed-in role may not make. */
export function NotAllowed({ title }: { title: string }) {
  return (
    <section>
      <h1>{title}</h1>
      <p className="muted">
        {NEEDS_MANAGER}
      </p>
    </section>
  );
}
