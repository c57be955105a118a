/**
 * HMAC request signing between the edge and the workers, with Web Crypto only (runs on Workers
 * and on Node 20 alike):
 *
 *   signature = hex(HMAC-SHA256(secret, METHOD \n PATH \n TIMESTAMP \n hex(SHA-256(body))))
 *
 * sent as `x-ladder-timestamp` (unix seconds) and `x-ladder-signature`. A receiver refuses a
 * missing or wrong signature and a timestamp outside the replay window; within the window it
 * refuses a signature it has already seen (the caller keeps that set).
 */
export const SIGNATURE_HEADER = 'x-ladder-signature';
export const TIMESTAMP_HEADER = 'x-ladder-timestamp';
export const REPLAY_WINDOW_S = 300;

const enc = new TextEncoder();

function hex(buf: ArrayBuffer): string {
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function hmacKey(secret: string): Promise<Awaited<ReturnType<typeof crypto.subtle.importKey>>> {
  return crypto.subtle.importKey('raw', enc.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, [
    'sign',
  ]);
}

export async function sha256Hex(body: string | Uint8Array): Promise<string> {
  const bytes = typeof body === 'string' ? enc.encode(body) : body;
  return hex(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
}

export async function signRequest(
  secret: string,
  method: string,
  path: string,
  body: string | Uint8Array,
  timestamp = Math.floor(Date.now() / 1000),
): Promise<Record<string, string>> {
  const payload = `${method.toUpperCase()}\n${path}\n${timestamp}\n${await sha256Hex(body)}`;
  const sig = hex(await crypto.subtle.sign('HMAC', await hmacKey(secret), enc.encode(payload)));
  return { [TIMESTAMP_HEADER]: String(timestamp), [SIGNATURE_HEADER]: sig };
}

export type VerifyResult = { ok: true; signature: string } | { ok: false; reason: string };

/** Checks the signature and the timestamp window; replay tracking is the caller's. */
export async function verifyRequest(
  secret: string,
  method: string,
  path: string,
  body: string | Uint8Array,
  headers: { get(name: string): string | null },
  now = Math.floor(Date.now() / 1000),
): Promise<VerifyResult> {
  const ts = headers.get(TIMESTAMP_HEADER);
  const sig = headers.get(SIGNATURE_HEADER);
  if (!ts || !sig) return { ok: false, reason: `missing ${!ts ? TIMESTAMP_HEADER : SIGNATURE_HEADER}` };
  const t = Number(ts);
  if (!Number.isInteger(t)) return { ok: false, reason: `${TIMESTAMP_HEADER} is not unix seconds` };
  if (Math.abs(now - t) > REPLAY_WINDOW_S) return { ok: false, reason: 'stale timestamp' };
  const want = (await signRequest(secret, method, path, body, t))[SIGNATURE_HEADER]!;
  if (!timingSafeEqual(want, sig)) return { ok: false, reason: 'bad signature' };
  return { ok: true, signature: sig };
}

function timingSafeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
