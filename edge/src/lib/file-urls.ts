import { deriveSecret } from '@ladder/schemas';
import { config } from './config.ts';

/**
 * Signed, expiring URLs through which a worker GETs a tenant's training file:
 * `/internal/v1/files/{id}/content?tenant=..&expires=..&sig=hex(HMAC(key, "file\n{tenant}\n{id}\n{expires}"))`.
 * The key is derived from the master for this purpose only: no worker holds it, so none can
 * mint a URL, and an `expires` further out than the edge ever hands out is refused.
 */
const enc = new TextEncoder();
export const FILE_URL_TTL_S = 24 * 3600;
/** Clock skew tolerated on `expires` beyond the TTL. */
const EXPIRES_SKEW_S = 300;

async function fileSig(master: string, tenant: string, fileId: string, expires: number): Promise<string> {
  const key = await crypto.subtle.importKey(
    'raw',
    enc.encode(await deriveSecret(master, 'ladder file urls v1')),
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
  if (expires > now / 1000 + FILE_URL_TTL_S + EXPIRES_SKEW_S) {
    return { ok: false, reason: `expires is more than ${FILE_URL_TTL_S} s away` };
  }
  const want = await fileSig(config(env).signingSecret, q.tenant, fileId, expires);
  if (want.length !== q.sig.length) return { ok: false, reason: 'bad signature' };
  let diff = 0;
  for (let i = 0; i < want.length; i++) diff |= want.charCodeAt(i) ^ q.sig.charCodeAt(i);
  return diff === 0 ? { ok: true, tenant: q.tenant } : { ok: false, reason: 'bad signature' };
}
