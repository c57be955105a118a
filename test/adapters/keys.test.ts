import { describe, expect, it } from 'vitest';
import { adapterKey, tenantPrefix } from '../../adapters/index.ts';

describe('adapter keys stay inside the tenant prefix', () => {
  it('builds a versioned key', () => {
    expect(adapterKey('acme', 'sentiment-v2', 3)).toBe('tenants/acme/adapters/sentiment-v2/v3/');
  });

  it.each(['../other', 'a/b', '', '.hidden', 'x'.repeat(129)])('refuses id %j', (id) => {
    expect(() => adapterKey('acme', id, 1)).toThrow();
    expect(() => tenantPrefix(id)).toThrow();
  });

  it('refuses a non-positive version', () => {
    expect(() => adapterKey('acme', 'a', 0)).toThrow();
  });
});
