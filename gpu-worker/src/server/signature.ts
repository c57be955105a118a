import { apiError, REPLAY_WINDOW_S, TIMESTAMP_HEADER, verifyRequest } from '@ladder/schemas';
import type { MiddlewareHandler } from 'hono';

export interface SignatureOptions {
  secret: string;
  /** Seconds a timestamp stays valid either way; a signature is remembered this long. */
  windowS: number;
  /** Unix seconds (tests pass a fake clock). */
  now: () => number;
}

const DEFAULTS = {
  windowS: REPLAY_WINDOW_S,
  now: () => Math.floor(Date.now() / 1000),
} satisfies Partial<SignatureOptions>;

/**
 * Only requests the edge signed get through: HMAC over method, URL path (no query), timestamp
 * and body hash (schemas/src/signing.ts). A signature seen before inside the window is a replay
 * and refused; seen signatures are kept until their timestamp leaves the window, so the set is
 * bounded by the request rate times the window.
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
    const body = new Uint8Array(await c.req.arrayBuffer());
    const path = new URL(c.req.url).pathname;
    const result = await verifyRequest(o.secret, c.req.method, path, body, c.req.raw.headers, now);
    if (!result.ok) {
      return c.json(
        apiError(`request signature refused: ${result.reason}`, 'authentication_error', 'bad_signature'),
        401,
      );
    }
    if (seen.has(result.signature)) {
      return c.json(
        apiError('request signature refused: replayed request', 'authentication_error', 'replay'),
        401,
      );
    }
    // A signature cannot verify once its timestamp leaves the window, so forget it then. The map
    // is pruned in insertion order: skewed clocks only make an entry live a little longer.
    const ts = Number(c.req.header(TIMESTAMP_HEADER));
    seen.set(result.signature, ts + o.windowS + 1);
    await next();
  } satisfies MiddlewareHandler;
}
