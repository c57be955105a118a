import { z } from 'zod';

/**
 * Every object of a tenant lives under `tenants/{tenant}/`. Ids are restricted to a safe
 * alphabet so that no key built from them can escape that prefix (no `/`, no `..`).
 */
export const SafeId = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/,
    'must be 1-128 of [A-Za-z0-9_-], starting with a letter or digit',
  );

export const AdapterVersion = z.number().int().positive().max(1_000_000);

export function tenantPrefix(tenant: string): string {
  return `tenants/${SafeId.parse(tenant)}/`;
}

export function adapterKey(tenant: string, adapterId: string, version: number): string {
  return `${tenantPrefix(tenant)}adapters/${SafeId.parse(adapterId)}/v${AdapterVersion.parse(version)}/`;
}
