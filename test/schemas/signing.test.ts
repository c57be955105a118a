import { describe, expect, it } from 'vitest';
import {
  checkSignatureHeaders,
  deriveWorkerSecret,
  GenerateRequest,
  NONCE_HEADER,
  StartJobRequest,
  signRequest,
  verifyRequest,
} from '../../schemas/index.ts';

const headersOf = (h: Record<string, string>) => new Headers(h);

describe('edge <-> worker request signing', () => {
  it('verifies what it signed, and refuses a changed body, path, method, secret or an old timestamp', async () => {
    const body = JSON.stringify({ hello: 'world' });
    const now = 1_800_000_000;
    const h = await signRequest('s3cret', 'POST', '/internal/v1/generate', body, now);
    expect(
      await verifyRequest('s3cret', 'POST', '/internal/v1/generate', body, headersOf(h), now + 10),
    ).toMatchObject({ ok: true });
    const bad = [
      await verifyRequest('s3cret', 'POST', '/internal/v1/generate', `${body} `, headersOf(h), now),
      await verifyRequest('s3cret', 'POST', '/internal/v1/jobs', body, headersOf(h), now),
      await verifyRequest('s3cret', 'GET', '/internal/v1/generate', body, headersOf(h), now),
      await verifyRequest('other', 'POST', '/internal/v1/generate', body, headersOf(h), now),
      await verifyRequest('s3cret', 'POST', '/internal/v1/generate', body, headersOf(h), now + 301),
      await verifyRequest('s3cret', 'POST', '/internal/v1/generate', body, headersOf({}), now),
    ];
    expect(bad.map((r) => (r.ok ? 'ok' : r.reason))).toEqual([
      'bad signature',
      'bad signature',
      'bad signature',
      'bad signature',
      'stale timestamp',
      'missing x-ladder-timestamp',
    ]);
  });
});

describe('per-worker secrets and nonces', () => {
  it('derives one secret per worker id from the master; none verifies as another', async () => {
    const a = await deriveWorkerSecret('master-secret', 'worker-a');
    const b = await deriveWorkerSecret('master-secret', 'worker-b');
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(a).toBe(await deriveWorkerSecret('master-secret', 'worker-a'));
    expect(new Set([a, b, await deriveWorkerSecret('other-master', 'worker-a')]).size).toBe(3);
    const h = await signRequest(a, 'POST', '/p', 'body');
    expect(await verifyRequest(a, 'POST', '/p', 'body', headersOf(h))).toMatchObject({ ok: true });
    expect(await verifyRequest(b, 'POST', '/p', 'body', headersOf(h))).toMatchObject({ ok: false });
    expect(await verifyRequest('master-secret', 'POST', '/p', 'body', headersOf(h))).toMatchObject({
      ok: false,
    });
  });

  it('signs each request with a fresh nonce, covered by the signature', async () => {
    const now = 1_800_000_000;
    const one = await signRequest('s', 'POST', '/p', 'same', now);
    const two = await signRequest('s', 'POST', '/p', 'same', now);
    expect(one['x-ladder-signature']).not.toBe(two['x-ladder-signature']);
    const swapped = headersOf({ ...one, [NONCE_HEADER]: two[NONCE_HEADER]! });
    expect(await verifyRequest('s', 'POST', '/p', 'same', swapped, now)).toEqual({
      ok: false,
      reason: 'bad signature',
    });
    const { [NONCE_HEADER]: _, ...without } = one;
    expect(checkSignatureHeaders(headersOf(without), now)).toEqual({
      ok: false,
      reason: 'missing or malformed x-ladder-nonce',
    });
  });
});

describe('internal protocol schemas', () => {
  it('fill sampling and hyperparameter defaults and reject unknown fields', () => {
    const g = GenerateRequest.parse({
      request_id: 'r1',
      tenant: 'acme',
      adapter: null,
      prompt: { messages: [{ role: 'user', content: 'hi' }] },
      sampling: {},
    });
    expect(g.sampling).toMatchObject({ max_tokens: 256, temperature: 1, top_p: 1, stop: [] });
    expect(() => GenerateRequest.parse({ ...g, extra: 1 })).toThrow();
    const j = StartJobRequest.parse({
      job_id: 'job1',
      tenant: 'acme',
      training_file_url: 'http://127.0.0.1:8787/internal/v1/files/f1?sig=x',
      method: { type: 'xladder' },
      callback_url: 'http://127.0.0.1:8787/internal/v1/jobs/job1/events',
    });
    expect(j.method.hyperparameters).toMatchObject({
      n_epochs: 'auto',
      batch_size: 'auto',
      reduction_factor: 8,
    });
    expect(j.attempt).toBe(1);
  });
});
