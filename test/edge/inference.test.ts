import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { WorkerRegistry } from '../../edge/src/durable-objects/worker-registry.ts';
import { type ApiErrorBody, call, eventually, json, newTenant } from './helpers/api.ts';
import { seedAdapter } from './helpers/seed.ts';
import { interceptWorkers, StandInWorker } from './helpers/stand-in-worker.ts';

type Completion = {
  id: string;
  object: string;
  model: string;
  choices: { message?: { content: string }; text?: string; finish_reason: string }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
};

const chat = (key: string, model: string, extra: Record<string, unknown> = {}) =>
  call('/v1/chat/completions', {
    key,
    body: { model, messages: [{ role: 'user', content: 'hi' }], ...extra },
  });

describe('completions, routing and failover', () => {
  let a: StandInWorker;
  let b: StandInWorker;
  beforeEach(async () => {
    a = new StandInWorker('stand-in-a');
    b = new StandInWorker('stand-in-b');
    interceptWorkers(a, b);
    await a.heartbeat();
    await b.heartbeat();
  });
  afterEach(() => vi.restoreAllMocks());

  it('answers a chat completion through the adapter, with usage, as a signed GenerateRequest', async () => {
    const t = await newTenant();
    const model = await seedAdapter(t.id, 'adp-chat');
    const res = await chat(t.key, model, { max_tokens: 16, temperature: 0, stop: 'END' });
    const out = await json<Completion>(res);
    const worker = res.headers.get('x-ladder-worker');
    expect(out).toMatchObject({
      object: 'chat.completion',
      model,
      usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
    });
    expect(out.choices[0]!.message!.content).toBe(`hello from ${worker}`);
    const gen = [...a.generations, ...b.generations].find((g) => g.request_id === out.id)!;
    expect(gen).toMatchObject({
      tenant: t.id,
      adapter: { tenant: t.id, adapter_id: 'adp-chat', version: 1 },
      sampling: { max_tokens: 16, temperature: 0, stop: ['END'] },
      prompt: { messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(a.rejectedSignatures.concat(b.rejectedSignatures)).toEqual([]);
  });

  it('answers /v1/completions on the plain backbone', async () => {
    const t = await newTenant();
    const out = await json<Completion>(
      await call('/v1/completions', { key: t.key, body: { model: 'ladder-tiny', prompt: 'Once' } }),
    );
    expect(out.object).toBe('text_completion');
    expect(out.choices[0]!.text).toMatch(/^hello from stand-in-/);
    expect(out.usage.total_tokens).toBe(10);
  });

  it('streams SSE in OpenAI chunk format, the last chunk carrying usage', async () => {
    const t = await newTenant();
    const model = await seedAdapter(t.id, 'adp-stream');
    const res = await chat(t.key, model, { stream: true });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const datas = (await res.text())
      .split('\n\n')
      .filter(Boolean)
      .map((e) => e.replace(/^data: /, ''));
    expect(datas.at(-1)).toBe('[DONE]');
    const chunks = datas.slice(0, -1).map((d) => JSON.parse(d));
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === model)).toBe(true);
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    expect(text).toBe(`hello from ${res.headers.get('x-ladder-worker')}`);
    expect(chunks.at(-2).choices[0].finish_reason).toBe('stop');
    expect(chunks.at(-1)).toMatchObject({
      choices: [],
      usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
    });
  });

  it("404s an unknown model and another tenant's adapter; 400s a bad body; 401s without a key", async () => {
    const t = await newTenant('t');
    const other = await newTenant('other');
    const theirs = await seedAdapter(other.id, 'adp-theirs');
    for (const model of [theirs, 'ft:ladder-tiny:x:nope', 'gpt-4o']) {
      const err = await json<ApiErrorBody>(await chat(t.key, model), 404);
      expect(err.error).toMatchObject({ code: 'model_not_found', param: 'model' });
    }
    const bad = await json<ApiErrorBody>(
      await call('/v1/chat/completions', { key: t.key, body: { model: 'ladder-tiny' } }),
      400,
    );
    expect(bad.error.param).toBe('messages');
    expect(
      (
        await json<ApiErrorBody>(
          await call('/v1/chat/completions', {
            key: t.key,
            body: { model: 'ladder-tiny', messages: [], n: 2 },
          }),
          400,
        )
      ).error.type,
    ).toBe('invalid_request_error');
    expect((await chat('', 'ladder-tiny')).status).toBe(401);
    expect((await call('/v1/completions', { body: { model: 'ladder-tiny', prompt: 'x' } })).status).toBe(401);
  });

  it("relays a worker's 400 as the client's error (context_length_exceeded), and other failures as 502", async () => {
    const t = await newTenant();
    const model = await seedAdapter(t.id, 'adp-long');
    for (const w of [a, b])
      w.refuseGenerations = {
        status: 400,
        code: 'context_length_exceeded',
        message: 'the prompt is 9000 tokens; the context holds 2048',
      };
    const long = await json<ApiErrorBody>(await chat(t.key, model), 400);
    expect(long.error).toEqual({
      message: 'the prompt is 9000 tokens; the context holds 2048',
      type: 'invalid_request_error',
      param: 'messages',
      code: 'context_length_exceeded',
    });
    const text = await json<ApiErrorBody>(
      await call('/v1/completions', { key: t.key, body: { model, prompt: 'x'.repeat(100), stream: true } }),
      400,
    );
    expect(text.error).toMatchObject({ code: 'context_length_exceeded', param: 'prompt' });
    // The worker's own failure is the platform's: a 502 (which clients may retry).
    for (const w of [a, b]) w.refuseGenerations = { status: 500, code: 'internal', message: 'out of memory' };
    const broken = await json<ApiErrorBody>(await chat(t.key, model), 502);
    expect(broken.error).toMatchObject({ type: 'server_error', code: 'worker_error' });
    expect(broken.error.message).toContain('out of memory');
  });

  it('routes an adapter to the same worker every time, spreads adapters, and fails over when its worker stops', async () => {
    const t = await newTenant();
    const models = await Promise.all(
      Array.from({ length: 8 }, (_, i) => seedAdapter(t.id, `adp-route-${i}`)),
    );
    const placement = new Map<string, string>();
    for (const model of models) {
      const seen = new Set<string>();
      for (let i = 0; i < 3; i++) seen.add((await chat(t.key, model)).headers.get('x-ladder-worker')!);
      expect(seen.size).toBe(1);
      placement.set(model, [...seen][0]!);
    }
    expect(new Set(placement.values())).toEqual(new Set(['stand-in-a', 'stand-in-b']));

    const model = models[0]!;
    const home = placement.get(model)!;
    const [down, up] = home === a.id ? [a, b] : [b, a];
    down.down = true;
    const res = await chat(t.key, model);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-ladder-worker')).toBe(up.id);
    down.down = false; // back: the adapter goes home again
    expect((await chat(t.key, model)).headers.get('x-ladder-worker')).toBe(home);

    a.down = true;
    b.down = true;
    const none = await json<ApiErrorBody>(await chat(t.key, model), 503);
    expect(none.error.code).toBe('no_worker_available');
  });

  it('waits out a non-streamed generation longer than the worker timeout on the worker that took it: one generation, billed once', async () => {
    const t = await newTenant();
    const model = await seedAdapter(t.id, 'adp-slow');
    // Headers at once, the body later than WORKER_TIMEOUT_MS (1000 ms in the test bindings).
    for (const w of [a, b]) w.bodyDelayMs = env.WORKER_TIMEOUT_MS + 1500;
    const res = await chat(t.key, model);
    const out = await json<Completion>(res);
    expect(out.usage.total_tokens).toBe(10);
    expect(a.generations.length + b.generations.length).toBe(1);
    const usage = await json<{
      data: { prompt_tokens: number; completion_tokens: number; requests: number }[];
    }>(await call('/v1/usage', { key: t.key }));
    expect(usage.data).toMatchObject([{ prompt_tokens: 7, completion_tokens: 3, requests: 1 }]);
  });

  it('bills a stream the client hangs up on for every token the worker generated, and counts it in the token limit', async () => {
    const t = await newTenant('aborter', { tokens_per_min: 1_000_000 });
    const model = await seedAdapter(t.id, 'adp-abort');
    for (const w of [a, b]) w.streamEveryMs = 20;
    const res = await chat(t.key, model, { stream: true, max_tokens: 4000 });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let seen = '';
    while ((seen.match(/ tok/g) ?? []).length < 3)
      seen += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    const home = res.headers.get('x-ladder-worker') === a.id ? a : b;
    const id = res.headers.get('x-request-id')!;
    type Usage = { data: { prompt_tokens: number; completion_tokens: number; requests: number }[] };
    const billed = await eventually(async () => {
      const u = await json<Usage>(await call('/v1/usage', { key: t.key }));
      return u.data.length ? u.data : undefined;
    });
    // The worker was told to stop, and what it generated up to then is what is billed.
    expect(home.controls).toContainEqual({ job_id: id, action: 'cancel_generation' });
    const generated = home.generated.get(id)!;
    expect(generated).toBeGreaterThanOrEqual(3);
    expect(billed).toEqual([
      expect.objectContaining({ prompt_tokens: 7, completion_tokens: generated, requests: 1 }),
    ]);
    const window = await runInDurableObject(
      env.TENANT_METER.get(env.TENANT_METER.idFromName(t.id)),
      async (_m, state) =>
        state.storage.sql.exec<{ tokens: number }>('SELECT SUM(tokens) AS tokens FROM rate_windows').one()
          .tokens,
    );
    expect(window).toBe(7 + generated);
  });

  it('drops workers that miss heartbeats; a heartbeat needs a valid signature', async () => {
    const reg = env.WORKER_REGISTRY.get(env.WORKER_REGISTRY.idFromName('global'));
    const ids = (now: number) =>
      runInDurableObject(reg, (r: WorkerRegistry) => r.healthy(now).map((w) => w.worker_id));
    expect(await ids(Date.now())).toEqual(['stand-in-a', 'stand-in-b']);
    const later = Date.now() + (env.HEARTBEAT_TTL_S + 1) * 1000;
    expect(await ids(later)).toEqual([]);
    expect(await runInDurableObject(reg, (r: WorkerRegistry) => r.dropStaleWorkers(later))).toEqual([
      'stand-in-a',
      'stand-in-b',
    ]);
    const t = await newTenant();
    expect((await json<ApiErrorBody>(await chat(t.key, 'ladder-tiny'), 503)).error.message).toContain(
      'No healthy worker',
    );
    await a.heartbeat();
    expect((await chat(t.key, 'ladder-tiny')).headers.get('x-ladder-worker')).toBe('stand-in-a');

    const unsigned = await call('/internal/v1/workers/heartbeat', { body: { worker_id: 'rogue' } });
    expect(unsigned.status).toBe(401);
  });
});
