import { sha256Hex, TenantLimits } from '@ladder/schemas';
import { config } from '../lib/config.ts';
import { newId, randomToken, unixSeconds } from '../lib/ids.ts';
import type { TenantContext } from '../lib/types.ts';

interface TenantRow {
  id: string;
  name: string;
  limits: string;
  created_at: number;
}

export function tenantLimits(env: Env, overrides: string): TenantLimits {
  return TenantLimits.parse({ ...config(env).defaultLimits, ...JSON.parse(overrides) });
}

export async function loadTenant(env: Env, id: string): Promise<TenantContext | null> {
  const row = await env.DB.prepare('SELECT * FROM tenants WHERE id = ?').bind(id).first<TenantRow>();
  return row ? { id: row.id, name: row.name, limits: tenantLimits(env, row.limits) } : null;
}

export async function createTenant(env: Env, name: string, limits: Partial<TenantLimits>) {
  const id = newId('tenant');
  const created_at = unixSeconds();
  await env.DB.prepare('INSERT INTO tenants (id, name, limits, created_at) VALUES (?, ?, ?, ?)')
    .bind(id, name, JSON.stringify(limits), created_at)
    .run();
  return {
    id,
    object: 'tenant' as const,
    name,
    limits: tenantLimits(env, JSON.stringify(limits)),
    created_at,
  };
}

interface KeyRow {
  id: string;
  tenant_id: string;
  name: string;
  prefix: string;
  created_at: number;
  revoked_at: number | null;
}

const keyObject = (r: KeyRow) => ({
  id: r.id,
  object: 'api_key' as const,
  tenant: r.tenant_id,
  name: r.name,
  prefix: r.prefix,
  created_at: r.created_at,
  revoked_at: r.revoked_at,
});

/** A new key: the secret is returned once; only its SHA-256 is stored. */
export async function createApiKey(env: Env, tenantId: string, name: string) {
  const key = `sk-ladder-${randomToken(40)}`;
  const row: KeyRow = {
    id: newId('key'),
    tenant_id: tenantId,
    name,
    prefix: key.slice(0, 14),
    created_at: unixSeconds(),
    revoked_at: null,
  };
  await env.DB.prepare(
    'INSERT INTO api_keys (id, tenant_id, key_hash, prefix, name, created_at) VALUES (?, ?, ?, ?, ?, ?)',
  )
    .bind(row.id, tenantId, await sha256Hex(key), row.prefix, name, row.created_at)
    .run();
  return { ...keyObject(row), key };
}

export async function revokeApiKey(env: Env, tenantId: string, keyId: string) {
  await env.DB.prepare(
    'UPDATE api_keys SET revoked_at = ? WHERE id = ? AND tenant_id = ? AND revoked_at IS NULL',
  )
    .bind(unixSeconds(), keyId, tenantId)
    .run();
  const row = await env.DB.prepare('SELECT * FROM api_keys WHERE id = ? AND tenant_id = ?')
    .bind(keyId, tenantId)
    .first<KeyRow>();
  return row ? keyObject(row) : null;
}

/** Every tenant, oldest first (the admin console's list). */
export async function listTenants(env: Env) {
  const { results } = await env.DB.prepare('SELECT * FROM tenants ORDER BY created_at, id').all<TenantRow>();
  return results.map((r) => ({
    id: r.id,
    object: 'tenant' as const,
    name: r.name,
    limits: tenantLimits(env, r.limits),
    created_at: r.created_at,
  }));
}

/** A tenant's keys, revoked ones included, without their secrets (only hashes are stored). */
export async function listApiKeys(env: Env, tenantId: string) {
  const { results } = await env.DB.prepare(
    'SELECT id, tenant_id, name, prefix, created_at, revoked_at FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id',
  )
    .bind(tenantId)
    .all<KeyRow>();
  return results.map(keyObject);
}
