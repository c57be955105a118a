import {
  apiError,
  checkSignatureHeaders,
  REPLAY_WINDOW_S,
  verifyRequest,
  WORKER_HEADER,
} from '@ladder/schemas';
import type { Context, MiddlewareHandler } from 'hono';

export interface SignatureOptions {
  secret: string;
  /** This worker's id: a request naming another one in x-ladder-worker is refused unread. */
  workerId: string | undefined;
  /** The largest body a signed request may carry; a longer one is cut off with a 413. */
  maxBodyBytes: number;
  /** Seconds a timestamp stays valid either way; a signature is remembered this long. */
  windowS: number;
  /** Unix seconds (tests pass a fake clock). */
  now: () => number;
}

const DEFAULTS = {
  workerId: undefined,
  maxBodyBytes: 8 * 1024 * 1024,
  windowS: REPLAY_WINDOW_S,
  now: () => Math.floor(Date.now() / 1000),
} satisfies Partial<SignatureOptions>;

const refuse = (c: Context, reason: string, code = 'bad_signature') =>
  c.json(apiError(`request signature refused: ${reason}`, 'authentication_error', code), 401);

const tooLarge = (c: Context, max: number) =>
  c.json(
    apiError(
      `request body is larger than the limit of ${max} bytes`,
      'invalid_request_error',
      'body_too_large',
    ),
    413,
  );

/** The body, read until it passes `max` bytes (then null: the rest is never read). */
async function readBounded(req: Request, max: number): Promise<Uint8Array | null> {
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * Only requests the edge signed get through: HMAC over method, URL path (no query), timestamp
 * and body hash (schemas/src/signing.ts). What the headers alone can refuse (no or a stale
 * timestamp, a malformed signature, another worker's id, a declared length over the limit) is
 * refused before a byte of the body is read, and the body is read only up to the limit, so an
 * unauthenticated client cannot make the worker hold more than one bounded body per connection.
 * A signature seen before inside the window is a replay and refused; seen signatures are kept
 * until their timestamp leaves the window, so the set is bounded by the request rate times the
 * window.
 */
export function signedRequests(opts: Partial<SignatureOptions> & Pick<SignatureOptions, 'secret'>) {
  const o = { ...DEFAULTS, ...opts } satisfies SignatureOptions;
  const seen = new Map<string, number>(); // signature -> expires (unix s), in insertion order
  return async function verifySignature(c, next) {
    const now = o.now();
    for (const [sig, expires] of seen) {
      if (expires > now) break;
      seen.delete(sig);
    }
    const pre = checkSignatureHeaders(c.req.raw.headers, now);
    if (!pre.ok) return refuse(c, pre.reason);
    const addressee = c.req.header(WORKER_HEADER);
    if (addressee !== undefined && o.workerId !== undefined && addressee !== o.workerId) {
      return refuse(
        c,
        `addressed to worker '${addressee.slice(0, 128)}', this is '${o.workerId}'`,
        'wrong_worker',
      );
    }
    if (seen.has(pre.signature)) return refuse(c, 'replayed request', 'replay');
    const declared = Number(c.req.header('content-length') ?? 0);
    if (declared > o.maxBodyBytes) return tooLarge(c, o.maxBodyBytes);
    const body = await readBounded(c.req.raw, o.maxBodyBytes);
    if (body === null) return tooLarge(c, o.maxBodyBytes);
    const path = new URL(c.req.url).pathname;
    const result = await verifyRequest(o.secret, c.req.method, path, body, c.req.raw.headers, now);
    if (!result.ok) return refuse(c, result.reason);
    // A signature cannot verify once its timestamp leaves the window, so forget it then. The map
    // is pruned in insertion order: skewed clocks only make an entry live a little longer.
    seen.set(result.signature, pre.timestamp + o.windowS + 1);
    // The stream is spent: routes read the verified bytes (as hono/body-limit hands them on).
    if (c.req.raw.body) c.req.raw = new Request(c.req.raw, { body });
    await next();
  } satisfies MiddlewareHandler;
}
