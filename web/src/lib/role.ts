// What the signed-in person may do, from their session's role: pages hide the actions the api
// would refuse (it stays the judge: every change is checked again there).
import { createContext, useContext } from 'react';

export type Role = 'viewer' | 'manager' | 'admin';

const RANK: Record<Role, number> = { viewer: 0, manager: 1, admin: 2 };

/** Whether `role` (as the session names it) includes `needed`; an unknown role includes nothing
 * beyond viewing. */
export function allows(role: string | undefined, needed: Role): boolean {
  const have = role !== undefined && Object.prototype.hasOwnProperty.call(RANK, role) ? RANK[role as Role] : 0;
  return have >= RANK[needed];
}

/** The session's role, provided by the signed-in shell. */
export const RoleContext = createContext<string>('viewer');

/** Whether the signed-in person has at least `needed`. */
export function useCan(needed: Role): boolean {
  return allows(useContext(RoleContext), needed);
}

/** Said where an action is not offered, so a viewer knows why. */
export const NEEDS_MANAGER = 'Your role (viewer) can read everything here; a manager or admin can make changes.';
