import { signRequest, verifyRequest } from '@ladder/schemas';
import type { HonoRequest } from 'hono';
import { config } from './config.ts';
import { ApiException, unauthorized } from './errors.ts';

/** An HMAC-signed request to a GPU worker (path + body signed), with a timeout. */
export async function signedFetch(
  env: Env,
  url: string,
  body: unknown,
  opts: { method?: string; timeoutMs?: number; streaming?: boolean } = {},
): Promise<Response> {
  const method = opts.method ?? 'POST';
  const text = JSON.stringify(body);
  const headers = await signRequest(config(env).signingSecret, method, new URL(url).pathname, text);
  // The timeout bounds connecting and, for a streamed answer, the wait for its headers only.
  const abort = new AbortController();
  const timer = setTimeout(
    () => abort.abort(new DOMException('worker timed out', 'TimeoutError')),
    opts.timeoutMs ?? config(env).workerTimeoutMs,
  );
  try {
    const res = await fetch(url, {
      method,
      body: text,
      headers: { ...headers, 'content-type': 'application/json' },
      signal: abort.signal,
    });
    if (opts.streaming) clearTimeout(timer);
    else {
      const buffered = await res.arrayBuffer();
      return new Response(buffered, { status: res.status, headers: res.headers });
    }
    return res;
  } finally {
    if (!opts.streaming) clearTimeout(timer);
  }
}

/** Reads and verifies a signed request from a worker; returns its raw body text. */
export async function verifiedBody(env: Env, req: HonoRequest): Promise<string> {
  const body = await req.text();
  const v = await verifyRequest(
    config(env).signingSecret,
    req.method,
    new URL(req.url).pathname,
    body,
    req.raw.headers,
  );
  if (!v.ok) throw unauthorized(`Bad request signature: ${v.reason}.`);
  return body;
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiException(400, 'Request body is not valid JSON.', 'invalid_request_error', 'invalid_json');
  }
}
