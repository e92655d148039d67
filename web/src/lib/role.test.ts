import { describe, expect, it } from 'vitest';
import { allows } from './role';

describe('allows', () => {
  it('orders viewer, manager, admin', () => {
    expect(allows('viewer', 'viewer')).toBe(true);
    expect(allows('viewer', 'manager')).toBe(false);
    expect(allows('manager', 'manager')).toBe(true);
    expect(allows('manager', 'admin')).toBe(false);
    expect(allows('admin', 'manager')).toBe(true);
  });

  it('gives an unknown or missing role no more than viewing', () => {
    expect(allows(undefined, 'viewer')).toBe(true);
    expect(allows('owner', 'manager')).toBe(false);
    expect(allows('toString', 'manager')).toBe(false);
  });
});
