import {
  checkSignatureHeaders,
  deriveWorkerSecret,
  signRequest,
  verifyRequest,
  WORKER_HEADER,
  WORKER_ID_PATTERN,
} from '@ladder/schemas';
import type { HonoRequest } from 'hono';
import { bodyTooLarge, readBounded } from './body.ts';
import { config } from './config.ts';
import { ApiException, unauthorized } from './errors.ts';

/**
 * An HMAC-signed request to a GPU worker (path + body signed). The timeout bounds connecting and
 * the wait for the answer's headers only: once a worker has answered it has the work, and its
 * body (a long generation, a stream) is read by the caller without a timer, so a slow answer is
 * never cut off and sent to another worker to be done again.
 */
export async function signedFetch(
  env: Env,
  /** The worker called: the request is signed with its own secret and names it. */
  workerId: string,
  url: string,
  body: unknown,
  opts: { method?: string; timeoutMs?: number } = {},
): Promise<Response> {
  const method = opts.method ?? 'POST';
  const text = JSON.stringify(body);
  const secret = await deriveWorkerSecret(config(env).signingSecret, workerId);
  const headers = await signRequest(secret, method, new URL(url).pathname, text);
  const abort = new AbortController();
  const timer = setTimeout(
    () => abort.abort(new DOMException('worker timed out', 'TimeoutError')),
    opts.timeoutMs ?? config(env).workerTimeoutMs,
  );
  try {
    const res = await fetch(url, {
      method,
      body: text,
      headers: { ...headers, [WORKER_HEADER]: workerId, 'content-type': 'application/json' },
      signal: abort.signal,
    });
    return res;
  } finally {
    clearTimeout(timer);
  }
}

/** A worker's request that verified: who signed it, its raw body, and its signature for the replay set. */
export interface VerifiedWorkerRequest {
  workerId: string;
  body: string;
  signature: string;
  timestamp: number;
}

/**
 * The most a worker's callback body may hold. Generous: the largest valid Heartbeat (10,000
 * loaded adapter ids of 128 characters) is about 1.3 MB, a JobEvent far less.
 */
export const WORKER_BODY_MAX_BYTES = 2 * 1024 * 1024;

/**
 * Reads and verifies a signed request from a worker, with the secret of the worker it names in
 * x-ladder-worker (derived from the master, so none is stored). The headers are checked before
 * the body is read, and the body only up to WORKER_BODY_MAX_BYTES (413 past it, with or without
 * content-length): anyone can send one before its signature is checked. Replays are the caller's
 * to refuse (store/signatures.ts).
 */
export async function verifiedWorkerRequest(env: Env, req: HonoRequest): Promise<VerifiedWorkerRequest> {
  const workerId = req.header(WORKER_HEADER);
  if (!workerId || !WORKER_ID_PATTERN.test(workerId)) {
    throw unauthorized(`Bad request signature: missing or malformed ${WORKER_HEADER}.`);
  }
  const pre = checkSignatureHeaders(req.raw.headers);
  if (!pre.ok) throw unauthorized(`Bad request signature: ${pre.reason}.`);
  const bytes = await readBounded(req.raw, WORKER_BODY_MAX_BYTES, () =>
    bodyTooLarge('Request body', WORKER_BODY_MAX_BYTES, null),
  );
  const body = new TextDecoder().decode(bytes);
  const secret = await deriveWorkerSecret(config(env).signingSecret, workerId);
  const v = await verifyRequest(secret, req.method, new URL(req.url).pathname, body, req.raw.headers);
  if (!v.ok) throw unauthorized(`Bad request signature: ${v.reason}.`);
  return { workerId, body, signature: v.signature, timestamp: pre.timestamp };
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiException(400, 'Request body is not valid JSON.', 'invalid_request_error', 'invalid_json');
  }
}
