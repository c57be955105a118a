import { sha256Hex } from '@ladder/schemas';
import type { MiddlewareHandler } from 'hono';
import { config } from '../../lib/config.ts';
import { unauthorized } from '../../lib/errors.ts';
import type { AppEnv } from '../../lib/types.ts';
import { loadTenant } from '../../store/tenants.ts';

function bearer(header: string | undefined): string | null {
  const m = header?.match(/^Bearer\s+(\S+)$/i);
  return m ? m[1]! : null;
}

/** Resolves `Authorization: Bearer sk-...` to its tenant; only the key's SHA-256 is ever looked up. */
export function tenantAuth(): MiddlewareHandler<AppEnv> {
  return async function tenantAuth(c, next) {
    const key = bearer(c.req.header('authorization'));
    if (!key) throw unauthorized('Missing API key: send "Authorization: Bearer <key>".');
    const row = await c.env.DB.prepare(
      'SELECT tenant_id FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL',
    )
      .bind(await sha256Hex(key))
      .first<{ tenant_id: string }>();
    const tenant = row && (await loadTenant(c.env, row.tenant_id));
    if (!tenant) throw unauthorized('Incorrect or revoked API key.');
    c.set('tenant', tenant);
    await next();
  };
}

/** The admin token guards tenant and key management. */
export function adminAuth(): MiddlewareHandler<AppEnv> {
  return async function adminAuth(c, next) {
    const token = bearer(c.req.header('authorization'));
    if (!token || !timingSafeEqual(token, config(c.env).adminToken)) {
      throw unauthorized('Admin routes need "Authorization: Bearer <admin token>".');
    }
    await next();
  };
}

function timingSafeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
