import { createExecutionContext } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createEdgeApp } from '../../edge/src/app.ts';
import { type ApiErrorBody, newTenant } from './helpers/api.ts';
import { interceptWorkers, StandInWorker } from './helpers/stand-in-worker.ts';

const LIMIT = 1024;
const app = createEdgeApp();
const small = () => ({ ...env, PROMPT_MAX_BYTES: LIMIT });
const post = (path: string, key: string, body: BodyInit, headers: Record<string, string> = {}) =>
  app.request(
    path,
    {
      method: 'POST',
      body,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    },
    small(),
    createExecutionContext(),
  );

describe('prompt size at the edge', () => {
  let worker: StandInWorker;
  beforeEach(async () => {
    worker = new StandInWorker('limits-a');
    interceptWorkers(worker);
    expect((await worker.heartbeat()).status).toBe(200);
  });
  afterEach(() => vi.restoreAllMocks());

  it('refuses a prompt over PROMPT_MAX_BYTES with 400 naming the field, before any worker sees it', async () => {
    const t = await newTenant();
    const text = await post(
      '/v1/completions',
      t.key,
      JSON.stringify({ model: 'ladder-tiny', prompt: 'é'.repeat(LIMIT / 2 + 1) }), // 2 bytes each
    );
    expect(text.status).toBe(400);
    expect(((await text.json()) as ApiErrorBody).error).toMatchObject({
      type: 'invalid_request_error',
      param: 'prompt',
      code: 'prompt_too_large',
    });
    const half = 'x'.repeat(LIMIT / 2 + 1);
    const chat = await post(
      '/v1/chat/completions',
      t.key,
      JSON.stringify({
        model: 'ladder-tiny',
        messages: [
          { role: 'user', content: half },
          { role: 'user', content: half },
        ],
      }),
    );
    expect(chat.status).toBe(400);
    const err = ((await chat.json()) as ApiErrorBody).error;
    expect(err).toMatchObject({ param: 'messages', code: 'prompt_too_large' });
    expect(err.message).toMatch(`${LIMIT} bytes`);
    expect(worker.generations).toHaveLength(0);
  });

  it('stops reading a body far over the bound (413), with or without content-length', async () => {
    const t = await newTenant();
    const big = JSON.stringify({ model: 'ladder-tiny', prompt: 'x'.repeat(LIMIT * 6 + 80 * 1024) });
    expect((await post('/v1/completions', t.key, big)).status).toBe(413);
    const stream = new ReadableStream<Uint8Array>({
      start(ctl) {
        ctl.enqueue(new TextEncoder().encode(big));
        ctl.close();
      },
    });
    expect((await post('/v1/completions', t.key, stream)).status).toBe(413);
  });

  it('passes a prompt within the bound on to a worker', async () => {
    const t = await newTenant();
    const ok = await post(
      '/v1/completions',
      t.key,
      JSON.stringify({ model: 'ladder-tiny', prompt: 'x'.repeat(LIMIT) }),
    );
    expect(ok.status).toBe(200);
    expect(worker.generations).toHaveLength(1);
  });
});
