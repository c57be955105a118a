import { env } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { UsageEvent } from '../../edge/src/durable-objects/tenant-meter.ts';
import { type ApiErrorBody, call, json, newTenant, uploadFile } from './helpers/api.ts';
import { seedAdapter } from './helpers/seed.ts';
import { interceptWorkers, StandInWorker } from './helpers/stand-in-worker.ts';

type Usage = {
  tenant: string;
  data: {
    day: string;
    model: string;
    prompt_tokens: number;
    completion_tokens: number;
    training_tokens: number;
    requests: number;
    cost_usd: number;
  }[];
  total_cost_usd: number;
};

const meterOf = (tenant: string) => env.TENANT_METER.get(env.TENANT_METER.idFromName(tenant));
const chat = (key: string, model: string) =>
  call('/v1/chat/completions', { key, body: { model, messages: [{ role: 'user', content: 'hi' }] } });

describe('usage metering, rate limits and quotas', () => {
  beforeEach(async () => {
    const w = new StandInWorker('stand-in-a');
    interceptWorkers(w);
    await w.heartbeat();
  });
  afterEach(() => vi.restoreAllMocks());

  it('aggregates by day and adapter with money from the price table, and exports meter events', async () => {
    const t = await newTenant();
    const model = await seedAdapter(t.id, 'adp-usage');
    await json(await chat(t.key, model));
    await json(await chat(t.key, model));
    await json(await chat(t.key, 'ladder-tiny'));
    const usage = await json<Usage>(await call('/v1/usage', { key: t.key }));
    const today = new Date().toISOString().slice(0, 10);
    // "*" prices: 0.0002 / 1k prompt, 0.0006 / 1k completion
    expect(usage.data).toEqual([
      {
        day: today,
        model,
        prompt_tokens: 14,
        completion_tokens: 6,
        training_tokens: 0,
        requests: 2,
        cost_usd: 0.000006,
      },
      {
        day: today,
        model: 'ladder-tiny',
        prompt_tokens: 7,
        completion_tokens: 3,
        training_tokens: 0,
        requests: 1,
        cost_usd: 0.000003,
      },
    ]);
    expect(usage.total_cost_usd).toBe(0.000009);
    const empty = await json<Usage>(
      await call('/v1/usage?start_date=2020-01-01&end_date=2020-01-31', { key: t.key }),
    );
    expect(empty.data).toEqual([]);
    expect((await call('/v1/usage?start_date=yesterday', { key: t.key })).status).toBe(400);

    const exported = await json<{
      data: { identifier: string; event_name: string; payload: { value: number } }[];
    }>(await call('/v1/usage/meter_events', { key: t.key }));
    expect(exported.data).toHaveLength(6);
    expect(new Set(exported.data.map((e) => e.identifier)).size).toBe(6);
    expect(
      exported.data.filter((e) => e.event_name === 'ladder.prompt_tokens').map((e) => e.payload.value),
    ).toEqual([7, 7, 7]);

    // another tenant sees none of it
    const other = await newTenant('other');
    expect((await json<Usage>(await call('/v1/usage', { key: other.key }))).data).toEqual([]);
    expect((await call('/v1/usage')).status).toBe(401);
  });

  it('counts a billable event once, however often it is delivered', async () => {
    const t = await newTenant();
    const event: UsageEvent = {
      id: 'chatcmpl-dup',
      kind: 'inference',
      model: 'ladder-tiny',
      backbone: 'ladder-tiny',
      ts: Date.now(),
      prompt_tokens: 100,
      completion_tokens: 50,
      training_tokens: 0,
    };
    const results = await Promise.all([1, 2, 3].map(() => meterOf(t.id).record(event)));
    expect(results.filter((r) => r.recorded)).toHaveLength(1);
    expect(await meterOf(t.id).record({ ...event, prompt_tokens: 999 })).toEqual({ recorded: false });
    const usage = await json<Usage>(await call('/v1/usage', { key: t.key }));
    expect(usage.data).toMatchObject([{ prompt_tokens: 100, completion_tokens: 50, requests: 1 }]);
  });

  it('answers 429 with retry-after and x-ratelimit-* headers after requests/min', async () => {
    const t = await newTenant('limited', { requests_per_min: 3 });
    for (let i = 0; i < 3; i++) {
      const res = await call('/v1/files', { key: t.key });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-ratelimit-limit-requests')).toBe('3');
      expect(res.headers.get('x-ratelimit-remaining-requests')).toBe(String(2 - i));
    }
    const res = await call('/v1/files', { key: t.key });
    const err = await json<ApiErrorBody>(res, 429);
    expect(err.error.code).toBe('rate_limit_exceeded');
    expect(res.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    const retry = Number(res.headers.get('retry-after'));
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(60);
    expect(res.headers.get('x-ratelimit-reset-requests')).toBe(`${retry}s`);
    // limits are per tenant
    const other = await newTenant('free');
    expect((await call('/v1/files', { key: other.key })).status).toBe(200);
  });

  it('answers 429 once the tokens/min budget is spent', async () => {
    const t = await newTenant('tokens', { tokens_per_min: 10 });
    const first = await chat(t.key, 'ladder-tiny'); // 7 + 3 tokens
    expect(first.status).toBe(200);
    expect(first.headers.get('x-ratelimit-limit-tokens')).toBe('10');
    const res = await chat(t.key, 'ladder-tiny');
    expect(res.status).toBe(429);
    expect(res.headers.get('x-ratelimit-remaining-tokens')).toBe('0');
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    // routes that spend no tokens still pass
    expect((await call('/v1/models', { key: t.key })).status).toBe(200);
  });

  it('enforces the concurrent-jobs and adapter quotas', async () => {
    const t = await newTenant('quota', { concurrent_jobs: 1, max_adapters: 2 });
    const file = await uploadFile(t.key);
    const body = { model: 'ladder-tiny', training_file: file.id };
    expect((await call('/v1/fine_tuning/jobs', { key: t.key, body })).status).toBe(200);
    const busy = await json<ApiErrorBody>(await call('/v1/fine_tuning/jobs', { key: t.key, body }), 429);
    expect(busy.error.code).toBe('concurrent_jobs_quota');

    const u = await newTenant('adapters', { concurrent_jobs: 5, max_adapters: 2 });
    const uFile = await uploadFile(u.key);
    await seedAdapter(u.id, 'adp-q1');
    await seedAdapter(u.id, 'adp-q2');
    const full = await json<ApiErrorBody>(
      await call('/v1/fine_tuning/jobs', { key: u.key, body: { ...body, training_file: uFile.id } }),
      429,
    );
    expect(full.error.code).toBe('adapter_quota');
  });

  it('holds parallel completions to the tokens/min budget: each reserves its tokens before the worker runs', async () => {
    // Each request reserves its prompt estimate + max_tokens (1 + 10); the limit admits two.
    const t = await newTenant('parallel-tokens', { tokens_per_min: 20, requests_per_min: 100 });
    const results = await Promise.all(
      Array.from({ length: 6 }, () =>
        call('/v1/chat/completions', {
          key: t.key,
          body: { model: 'ladder-tiny', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] },
        }),
      ),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 200, 429, 429, 429, 429]);
    const refused = await json<ApiErrorBody>(results.find((r) => r.status === 429)!, 429);
    expect(refused.error.code).toBe('rate_limit_exceeded');
    await Promise.all(results.map((r) => (r.bodyUsed ? null : r.text())));
  });

  it('counts tokens in the window the generation ended in, and gives back a refused request its reservation', async () => {
    const t = await newTenant('windows', { tokens_per_min: 100 });
    const limits = { requests_per_min: 100, tokens_per_min: 100, concurrent_jobs: 1, max_adapters: 1 };
    const m = meterOf(t.id);
    const w0 = 1_000 * 60_000;
    expect(await m.reserve('req-long', limits, w0 + 59_000, 90)).toMatchObject({ ok: true, remaining: 10 });
    // Started at the end of one minute, ended in the next: its 120 tokens count in the next.
    await m.record(
      {
        id: 'req-long',
        kind: 'inference',
        model: 'm',
        backbone: 'm',
        ts: w0 + 59_000,
        prompt_tokens: 20,
        completion_tokens: 100,
        training_tokens: 0,
      },
      w0 + 61_000,
    );
    expect((await m.reserve('req-next', limits, w0 + 62_000, 5)).ok).toBe(false);
    expect(await m.reserve('req-old', limits, w0 + 1_000, 5)).toMatchObject({ ok: true, remaining: 95 });
    await m.release('req-old');
    expect(await m.reserve('req-old-2', limits, w0 + 2_000, 100)).toMatchObject({ ok: true, remaining: 0 });
  });

  it('holds parallel job creates to the concurrent-jobs and adapter quotas', async () => {
    const t = await newTenant('parallel-jobs', {
      concurrent_jobs: 2,
      max_adapters: 10,
      requests_per_min: 100,
    });
    const file = await uploadFile(t.key);
    const body = { model: 'ladder-tiny', training_file: file.id };
    const results = await Promise.all(
      Array.from({ length: 6 }, () => call('/v1/fine_tuning/jobs', { key: t.key, body })),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 200, 429, 429, 429, 429]);
    await Promise.all(results.map((r) => (r.bodyUsed ? null : r.text())));

    const u = await newTenant('parallel-adapters', {
      concurrent_jobs: 10,
      max_adapters: 3,
      requests_per_min: 100,
    });
    const uFile = await uploadFile(u.key);
    await seedAdapter(u.id, 'adp-pa1');
    const more = await Promise.all(
      Array.from({ length: 5 }, () =>
        call('/v1/fine_tuning/jobs', { key: u.key, body: { ...body, training_file: uFile.id } }),
      ),
    );
    expect(more.map((r) => r.status).sort()).toEqual([200, 200, 429, 429, 429]);
    const refused = await json<ApiErrorBody>(more.find((r) => r.status === 429)!, 429);
    expect(refused.error.code).toBe('adapter_quota');
    await Promise.all(more.map((r) => (r.bodyUsed ? null : r.text())));
  });
});
