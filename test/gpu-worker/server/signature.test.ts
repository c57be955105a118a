import { describe, expect, it } from 'vitest';
import { createWorkerApp } from '../../../gpu-worker/src/server/app.ts';
import { signRequest, WORKER_HEADER } from '../../../schemas/index.ts';

const SECRET = 'test-secret-0123456789abcdef';
const LIMIT = 64 * 1024;
const CHUNK = 16 * 1024;

/** A body of `chunks` x 16 KiB that counts what the server pulled from it. */
function countingBody(chunks: number) {
  const state = { pulled: 0 };
  let left = chunks;
  const stream = new ReadableStream<Uint8Array>({
    pull(ctl) {
      if (left-- <= 0) return ctl.close();
      state.pulled += CHUNK;
      ctl.enqueue(new Uint8Array(CHUNK).fill(0x20));
    },
  });
  return { stream, state };
}

const app = () => createWorkerApp({ secret: SECRET, workerId: 'worker-a', maxBodyBytes: LIMIT });
const post = (headers: Record<string, string>, body: ReadableStream | string) =>
  app().request('http://worker.test/internal/v1/generate', {
    method: 'POST',
    headers,
    body,
    duplex: 'half',
  } as RequestInit);

describe('signed requests: the body is bounded and read only after the headers pass', () => {
  it('refuses an unsigned request without reading its body', async () => {
    const { stream, state } = countingBody(4096); // 64 MiB offered
    const res = await post({}, stream);
    expect(res.status).toBe(401);
    expect(state.pulled).toBeLessThanOrEqual(2 * CHUNK);
  });

  it('refuses a request addressed to another worker id without reading its body', async () => {
    const { stream, state } = countingBody(4096);
    const headers = await signRequest(SECRET, 'POST', '/internal/v1/generate', '');
    const res = await post({ ...headers, [WORKER_HEADER]: 'worker-b' }, stream);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('wrong_worker');
    expect(state.pulled).toBeLessThanOrEqual(2 * CHUNK);
  });

  it('stops reading a body without content-length at the limit: 413 naming it', async () => {
    const { stream, state } = countingBody(4096);
    const headers = await signRequest(SECRET, 'POST', '/internal/v1/generate', 'whatever');
    const res = await post(headers, stream);
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(`${LIMIT} bytes`);
    expect(state.pulled).toBeLessThanOrEqual(LIMIT + 2 * CHUNK);
  });

  it('refuses a declared content-length over the limit before reading', async () => {
    const headers = await signRequest(SECRET, 'POST', '/internal/v1/generate', 'x');
    const res = await post({ ...headers, 'content-length': String(LIMIT + 1) }, 'x');
    expect(res.status).toBe(413);
  });

  it('hands a verified body under the limit on to the route', async () => {
    const body = JSON.stringify({
      request_id: 'r1',
      tenant: 't',
      adapter: null,
      prompt: { text: 'hi' },
      sampling: {},
    });
    const headers = await signRequest(SECRET, 'POST', '/internal/v1/generate', body);
    const res = await post(
      { ...headers, [WORKER_HEADER]: 'worker-a', 'content-type': 'application/json' },
      body,
    );
    // Parsed and validated (a bad body would be a 400), then refused: this app has no backbone.
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('not_ready');
  });
});
