import { config } from './config.ts';

/**
 * Signed, expiring URLs through which a worker GETs a tenant's training file:
 * `/internal/v1/files/{id}/content?tenant=..&expires=..&sig=hex(HMAC(secret, "file\n{tenant}\n{id}\n{expires}"))`.
 */
const enc = new TextEncoder();
export const FILE_URL_TTL_S = 24 * 3600;

async function fileSig(secret: string, tenant: string, fileId: string, expires: number): Promise<string> {
  const key = await crypto.subtle.importKey(
    'raw',
    enc.encode(secret),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  );
  const sig = await crypto.subtle.sign('HMAC', key, enc.encode(`file\n${tenant}\n${fileId}\n${expires}`));
  return [...new Uint8Array(sig)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export async function signedFileUrl(
  env: Env,
  tenant: string,
  fileId: string,
  now = Date.now(),
): Promise<string> {
  const expires = Math.floor(now / 1000) + FILE_URL_TTL_S;
  const url = new URL(`/internal/v1/files/${encodeURIComponent(fileId)}/content`, config(env).publicBaseUrl);
  url.searchParams.set('tenant', tenant);
  url.searchParams.set('expires', String(expires));
  url.searchParams.set('sig', await fileSig(config(env).signingSecret, tenant, fileId, expires));
  return url.toString();
}

export async function verifyFileUrl(
  env: Env,
  fileId: string,
  q: { tenant?: string; expires?: string; sig?: string },
  now = Date.now(),
): Promise<{ ok: true; tenant: string } | { ok: false; reason: string }> {
  if (!q.tenant || !q.expires || !q.sig) return { ok: false, reason: 'missing tenant, expires or sig' };
  const expires = Number(q.expires);
  if (!Number.isInteger(expires) || expires < now / 1000) return { ok: false, reason: 'expired' };
  const want = await fileSig(config(env).signingSecret, q.tenant, fileId, expires);
  if (want.length !== q.sig.length) return { ok: false, reason: 'bad signature' };
  let diff = 0;
  for (let i = 0; i < want.length; i++) diff |= want.charCodeAt(i) ^ q.sig.charCodeAt(i);
  return diff === 0 ? { ok: true, tenant: q.tenant } : { ok: false, reason: 'bad signature' };
}
