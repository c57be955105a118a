/**
 * HMAC request signing between the edge and the workers, with Web Crypto only (runs on Workers
 * and on Node 20 alike):
 *
 *   signature = hex(HMAC-SHA256(secret, METHOD \n PATH \n TIMESTAMP \n NONCE \n hex(SHA-256(body))))
 *
 * sent as `x-ladder-timestamp` (unix seconds), `x-ladder-nonce` (random, per request) and
 * `x-ladder-signature`. A receiver refuses a missing or wrong signature and a timestamp outside
 * the replay window; within the window it refuses a signature it has already seen (the caller
 * keeps that set). The nonce makes every request's signature unique, so a sender's retry of the
 * same bytes is a new request (made idempotent by its ids) and only a captured copy is a replay.
 *
 * Each worker has its own secret, derived from the edge's master secret and the worker's id
 * (`deriveWorkerSecret`), so the edge verifies any worker without storing keys and a worker holds
 * nothing that signs as another worker (or as the edge to another worker). Requests carry the
 * worker's id in `x-ladder-worker`: the edge picks the key by it, a worker refuses a request meant
 * for another id before reading its body.
 */
export const SIGNATURE_HEADER = 'x-ladder-signature';
export const TIMESTAMP_HEADER = 'x-ladder-timestamp';
export const NONCE_HEADER = 'x-ladder-nonce';
export const WORKER_HEADER = 'x-ladder-worker';
export const REPLAY_WINDOW_S = 300;
/** The edge's local-development master secret (edge/.dev.vars); refused outside development. */
export const DEV_SIGNING_SECRET = 'dev-worker-signing-secret';
/** A worker id as heartbeats and `x-ladder-worker` carry it. */
export const WORKER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

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

/** hex(HMAC-SHA256(master, label)): a key for one purpose, derived so that none needs storing. */
export async function deriveSecret(master: string, label: string): Promise<string> {
  return hex(await crypto.subtle.sign('HMAC', await hmacKey(master), enc.encode(label)));
}

/** The credential of one worker: what it signs with and what the edge signs to it with. */
export function deriveWorkerSecret(master: string, workerId: string): Promise<string> {
  return deriveSecret(master, `ladder worker v1\n${workerId}`);
}

export async function signRequest(
  secret: string,
  method: string,
  path: string,
  body: string | Uint8Array,
  timestamp = Math.floor(Date.now() / 1000),
  nonce = hex(crypto.getRandomValues(new Uint8Array(16)).buffer as ArrayBuffer),
): Promise<Record<string, string>> {
  const payload = `${method.toUpperCase()}\n${path}\n${timestamp}\n${nonce}\n${await sha256Hex(body)}`;
  const sig = hex(await crypto.subtle.sign('HMAC', await hmacKey(secret), enc.encode(payload)));
  return { [TIMESTAMP_HEADER]: String(timestamp), [NONCE_HEADER]: nonce, [SIGNATURE_HEADER]: sig };
}

export type VerifyResult = { ok: true; signature: string } | { ok: false; reason: string };

type Headers = { get(name: string): string | null };

/**
 * What can be checked before the body is read: both headers present, the signature shaped as
 * one, the timestamp inside the window. A receiver calls this first, so a request that cannot
 * verify costs it no body.
 */
export function checkSignatureHeaders(
  headers: Headers,
  now = Math.floor(Date.now() / 1000),
): { ok: true; timestamp: number; nonce: string; signature: string } | { ok: false; reason: string } {
  const ts = headers.get(TIMESTAMP_HEADER);
  const sig = headers.get(SIGNATURE_HEADER);
  const nonce = headers.get(NONCE_HEADER);
  if (!ts || !sig) return { ok: false, reason: `missing ${!ts ? TIMESTAMP_HEADER : SIGNATURE_HEADER}` };
  if (!nonce || !/^[0-9a-f]{16,64}$/.test(nonce))
    return { ok: false, reason: `missing or malformed ${NONCE_HEADER}` };
  const t = Number(ts);
  if (!Number.isInteger(t)) return { ok: false, reason: `${TIMESTAMP_HEADER} is not unix seconds` };
  if (Math.abs(now - t) > REPLAY_WINDOW_S) return { ok: false, reason: 'stale timestamp' };
  if (!/^[0-9a-f]{64}$/.test(sig)) return { ok: false, reason: 'bad signature' };
  return { ok: true, timestamp: t, nonce, signature: sig };
}

/** Checks the signature and the timestamp window; replay tracking is the caller's. */
export async function verifyRequest(
  secret: string,
  method: string,
  path: string,
  body: string | Uint8Array,
  headers: Headers,
  now = Math.floor(Date.now() / 1000),
): Promise<VerifyResult> {
  const pre = checkSignatureHeaders(headers, now);
  if (!pre.ok) return pre;
  const { timestamp: t, nonce, signature: sig } = pre;
  const want = (await signRequest(secret, method, path, body, t, nonce))[SIGNATURE_HEADER]!;
  if (!timingSafeEqual(want, sig)) return { ok: false, reason: 'bad signature' };
  return { ok: true, signature: sig };
}

function timingSafeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
