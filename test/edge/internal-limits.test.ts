import { SELF } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { deriveWorkerSecret, type Heartbeat, signRequest, WORKER_HEADER } from '@ladder/schemas';
import { describe, expect, it } from 'vitest';
import { WORKER_BODY_MAX_BYTES } from '../../edge/src/lib/worker-client.ts';
import type { ApiErrorBody } from './helpers/api.ts';

const PATH = '/internal/v1/workers/heartbeat';
const WORKER = 'bound-a';

/** A heartbeat whose JSON is about `bytes` long (loaded_adapters padded; schema-valid up to ~1.3 MB). */
function heartbeatOf(bytes: number): string {
  const id = 'a'.repeat(128);
  const hb: Heartbeat = {
    worker_id: WORKER,
    url: 'http://bound-a.test',
    backbone: { name: 'ladder-tiny', fingerprint: 'a'.repeat(64) },
    capacity: { queue_depth: 0, max_queue: 8, running_jobs: 0 },
    loaded_adapters: Array.from({ length: Math.ceil(bytes / (id.length + 3)) }, () => id),
  };
  return JSON.stringify(hb);
}

/** A correctly signed heartbeat, sent whole or as a stream without content-length. */
async function post(text: string, chunked: boolean): Promise<Response> {
  const secret = await deriveWorkerSecret(env.WORKER_SIGNING_SECRET, WORKER);
  const headers = await signRequest(secret, 'POST', PATH, text);
  const bytes = new TextEncoder().encode(text);
  const body = chunked
    ? new ReadableStream<Uint8Array>({
        start(ctl) {
          for (let at = 0; at < bytes.length; at += 64 * 1024) ctl.enqueue(bytes.slice(at, at + 64 * 1024));
          ctl.close();
        },
      })
    : bytes;
  return SELF.fetch(`https://edge.test${PATH}`, {
    method: 'POST',
    body,
    headers: { ...headers, [WORKER_HEADER]: WORKER, 'content-type': 'application/json' },
  });
}

describe("workers' callback bodies are bounded", () => {
  it('accepts a signed heartbeat under the bound', async () => {
    const res = await post(heartbeatOf(WORKER_BODY_MAX_BYTES / 2), true);
    expect(res.status).toBe(200);
  });

  it('refuses a signed body past the bound with 413, with or without content-length', async () => {
    const text = heartbeatOf(WORKER_BODY_MAX_BYTES + 1024);
    expect(text.length).toBeGreaterThan(WORKER_BODY_MAX_BYTES);
    for (const chunked of [false, true]) {
      const res = await post(text, chunked);
      expect(res.status, chunked ? 'chunked' : 'content-length').toBe(413);
      const err = ((await res.json()) as ApiErrorBody).error;
      expect(err).toMatchObject({ type: 'invalid_request_error', code: 'request_too_large' });
      expect(err.message).toContain(`${WORKER_BODY_MAX_BYTES} bytes`);
    }
  });
});
