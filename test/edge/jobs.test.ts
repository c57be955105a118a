import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import type { StartJobRequest } from '@ladder/schemas';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { WorkerRegistry } from '../../edge/src/durable-objects/worker-registry.ts';
import { type ApiErrorBody, call, eventually, json, newTenant, uploadFile } from './helpers/api.ts';
import { interceptWorkers, manifestFor, StandInWorker } from './helpers/stand-in-worker.ts';

type Job = {
  id: string;
  status: string;
  attempt: number;
  fine_tuned_model: string | null;
  trained_tokens: number | null;
  error: { code: string; message: string } | null;
};

const registryStub = () => env.WORKER_REGISTRY.get(env.WORKER_REGISTRY.idFromName('global'));

/** Moves the registry's clock forward: every lease older than `ms` expires now. */
const expireLeasesAfter = (ms: number) =>
  runInDurableObject(registryStub(), (reg: WorkerRegistry) => reg.expireLeases(Date.now() + ms));

async function createJob(key: string, body: Record<string, unknown>, idempotencyKey?: string) {
  return call('/v1/fine_tuning/jobs', {
    key,
    body,
    headers: idempotencyKey ? { 'idempotency-key': idempotencyKey } : {},
  });
}

/** Waits for the queue consumer to lease the job to `worker` (attempt `attempt`). */
const leasedTo = (worker: StandInWorker, jobId: string, attempt = 1) =>
  eventually(async () => worker.jobs.find((j) => j.job_id === jobId && j.attempt === attempt));

describe('fine-tuning jobs', () => {
  let a: StandInWorker;
  let b: StandInWorker;
  beforeEach(async () => {
    a = new StandInWorker('stand-in-a');
    b = new StandInWorker('stand-in-b');
    interceptWorkers(a, b);
    expect((await a.heartbeat()).status).toBe(200);
    expect((await b.heartbeat()).status).toBe(200);
  });
  afterEach(() => vi.restoreAllMocks());

  it('Idempotency-Key: same key and body give the same job; another body gives 409', async () => {
    const t = await newTenant();
    const file = await uploadFile(t.key);
    const body = { model: 'ladder-tiny', training_file: file.id, suffix: 'idem' };
    const first = await json<Job>(await createJob(t.key, body, 'key-1'));
    const again = await createJob(t.key, body, 'key-1');
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await json<Job>(again)).id).toBe(first.id);
    const other = await json<ApiErrorBody>(
      await createJob(t.key, { ...body, suffix: 'other' }, 'key-1'),
      409,
    );
    expect(other.error.code).toBe('idempotency_key_reused');
    const list = await json<{ data: Job[] }>(await call('/v1/fine_tuning/jobs', { key: t.key }));
    expect(list.data.map((j) => j.id)).toEqual([first.id]);
    // the same key is a different key for another tenant
    const u = await newTenant('other');
    const uFile = await uploadFile(u.key);
    const theirs = await json<Job>(await createJob(u.key, { ...body, training_file: uFile.id }, 'key-1'));
    expect(theirs.id).not.toBe(first.id);
  });

  it('validates the body, the backbone and the file; needs a key; another tenant sees 404', async () => {
    const t = await newTenant();
    const file = await uploadFile(t.key);
    const bad = await json<ApiErrorBody>(await createJob(t.key, { model: 'ladder-tiny' }), 400);
    expect(bad.error.param).toBe('training_file');
    const model = await json<ApiErrorBody>(
      await createJob(t.key, { model: 'gpt-9', training_file: file.id }),
      400,
    );
    expect(model.error.code).toBe('model_not_found');
    const missing = await json<ApiErrorBody>(
      await createJob(t.key, { model: 'ladder-tiny', training_file: 'file-nope' }),
      404,
    );
    expect(missing.error.param).toBe('training_file');
    expect((await createJob('', { model: 'ladder-tiny', training_file: file.id })).status).toBe(401);

    const other = await newTenant('other');
    const otherFile = await uploadFile(other.key);
    // another tenant's file is not found either
    expect((await createJob(t.key, { model: 'ladder-tiny', training_file: otherFile.id })).status).toBe(404);
    const job = await json<Job>(await createJob(t.key, { model: 'ladder-tiny', training_file: file.id }));
    for (const path of ['', '/events', '/checkpoints']) {
      expect((await call(`/v1/fine_tuning/jobs/${job.id}${path}`, { key: other.key })).status).toBe(404);
    }
    expect(
      (await call(`/v1/fine_tuning/jobs/${job.id}/cancel`, { key: other.key, method: 'POST' })).status,
    ).toBe(404);
    expect(
      (await json<{ data: Job[] }>(await call('/v1/fine_tuning/jobs', { key: other.key }))).data,
    ).toEqual([]);
  });

  it('lists with cursor pagination, newest first', async () => {
    const t = await newTenant('pager', { concurrent_jobs: 10 });
    const file = await uploadFile(t.key);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++)
      ids.push(
        (await json<Job>(await createJob(t.key, { model: 'ladder-tiny', training_file: file.id }))).id,
      );
    const p1 = await json<{ data: Job[]; has_more: boolean }>(
      await call('/v1/fine_tuning/jobs?limit=2', { key: t.key }),
    );
    expect(p1.data.map((j) => j.id)).toEqual([ids[2], ids[1]]);
    expect(p1.has_more).toBe(true);
    const p2 = await json<{ data: Job[]; has_more: boolean }>(
      await call(`/v1/fine_tuning/jobs?limit=2&after=${p1.data[1]!.id}`, { key: t.key }),
    );
    expect(p2.data.map((j) => j.id)).toEqual([ids[0]]);
    expect(p2.has_more).toBe(false);
    expect((await call('/v1/fine_tuning/jobs?limit=0', { key: t.key })).status).toBe(400);
  });

  it('runs: queue -> lease -> signed callbacks -> adapter registered, events (JSON and SSE), checkpoints, usage once', async () => {
    const t = await newTenant();
    const file = await uploadFile(t.key);
    const job = await json<Job>(
      await createJob(t.key, { model: 'ladder-tiny', training_file: file.id, suffix: 'demo' }),
    );
    expect(job.status).toBe('queued');
    const start: StartJobRequest = await eventually(async () =>
      [...a.jobs, ...b.jobs].find((j) => j.job_id === job.id),
    );
    const worker = a.jobs.includes(start) ? a : b;
    expect(start).toMatchObject({ tenant: t.id, attempt: 1, suffix: 'demo', method: { type: 'lst' } });
    expect((await json<Job>(await call(`/v1/fine_tuning/jobs/${job.id}`, { key: t.key }))).status).toBe(
      'running',
    );

    // the worker fetches its training file through the signed URL
    const download = await call(
      new URL(start.training_file_url).pathname + new URL(start.training_file_url).search,
    );
    expect(download.status).toBe(200);
    expect(await download.text()).toContain('"assistant"');
    const tampered = new URL(start.training_file_url);
    tampered.searchParams.set('tenant', 'someone-else');
    expect((await call(tampered.pathname + tampered.search)).status).toBe(401);

    expect((await worker.sendEvent(start, { event_id: 'e1', type: 'started' })).status).toBe(200);
    await worker.sendEvent(start, { event_id: 'e2', type: 'progress', step: 5, total_steps: 10, loss: 1.5 });
    await worker.sendEvent(start, { event_id: 'e3', type: 'checkpoint', step: 5, loss: 1.4 });
    const final = {
      event_id: 'e4',
      type: 'succeeded' as const,
      step: 10,
      total_steps: 10,
      adapter: manifestFor(start),
      billed_training_tokens: 5000,
    };
    expect(await json(await worker.sendEvent(start, final))).toMatchObject({
      duplicate: false,
      job_status: 'succeeded',
    });
    // a redelivered final event (and a re-sent progress event) changes nothing
    expect(await json(await worker.sendEvent(start, final))).toMatchObject({ duplicate: true });
    expect(await json(await worker.sendEvent(start, { ...final, event_id: 'e4-retry' }))).toMatchObject({
      duplicate: false,
    });
    await worker.sendEvent(start, { event_id: 'e2', type: 'progress', step: 5, total_steps: 10, loss: 1.5 });

    const done = await json<Job>(await call(`/v1/fine_tuning/jobs/${job.id}`, { key: t.key }));
    expect(done).toMatchObject({
      status: 'succeeded',
      trained_tokens: 5000,
      fine_tuned_model: `ft:ladder-tiny:demo:adp-${job.id}`,
    });
    const events = await json<{ data: { id: string; type: string }[] }>(
      await call(`/v1/fine_tuning/jobs/${job.id}/events`, { key: t.key }),
    );
    expect(events.data.map((e) => e.type)).toEqual([
      'created',
      'dispatched',
      'started',
      'progress',
      'checkpoint',
      'succeeded',
      'succeeded',
    ]);
    const sse = await call(`/v1/fine_tuning/jobs/${job.id}/events?stream=true`, { key: t.key });
    expect(sse.headers.get('content-type')).toContain('text/event-stream');
    const sseText = await sse.text();
    expect(sseText.match(/event: fine_tuning.job.event/g)).toHaveLength(7);
    expect(sseText.trim().endsWith('data: [DONE]')).toBe(true);
    const ckpts = await json<{ data: { step_number: number; metrics: Record<string, number> }[] }>(
      await call(`/v1/fine_tuning/jobs/${job.id}/checkpoints`, { key: t.key }),
    );
    expect(ckpts.data).toMatchObject([{ step_number: 5, metrics: { train_loss: 1.4 } }]);

    const models = await json<{ data: { id: string; kind: string }[] }>(
      await call('/v1/models', { key: t.key }),
    );
    expect(models.data.filter((m) => m.kind === 'adapter').map((m) => m.id)).toEqual([done.fine_tuned_model]);
    const usage = await json<{ data: { model: string; training_tokens: number; cost_usd: number }[] }>(
      await call('/v1/usage', { key: t.key }),
    );
    expect(usage.data).toEqual([
      expect.objectContaining({ model: done.fine_tuned_model, training_tokens: 5000, cost_usd: 0.01 }),
    ]);
  });

  it('refuses unsigned or mis-signed worker callbacks', async () => {
    const t = await newTenant();
    const file = await uploadFile(t.key);
    const job = await json<Job>(await createJob(t.key, { model: 'ladder-tiny', training_file: file.id }));
    const start = await eventually(async () => [...a.jobs, ...b.jobs].find((j) => j.job_id === job.id));
    const path = new URL(start.callback_url).pathname;
    const event = {
      event_id: 'x',
      job_id: job.id,
      tenant: t.id,
      type: 'failed',
      created_at: new Date().toISOString(),
    };
    expect((await call(path, { body: event })).status).toBe(401);
    const { signedPost } = await import('./helpers/stand-in-worker.ts');
    expect((await signedPost(path, event, 'not-the-secret')).status).toBe(401);
    expect((await json<Job>(await call(`/v1/fine_tuning/jobs/${job.id}`, { key: t.key }))).status).toBe(
      'running',
    );
  });

  it('a lease that expires without events re-dispatches; the next attempt completes', async () => {
    const t = await newTenant();
    const file = await uploadFile(t.key);
    const job = await json<Job>(
      await createJob(t.key, { model: 'ladder-tiny', training_file: file.id, suffix: 'lease' }),
    );
    const first = await eventually(async () => [...a.jobs, ...b.jobs].find((j) => j.job_id === job.id));
    const silent = a.jobs.includes(first) ? a : b;
    const other = silent === a ? b : a;
    silent.down = true; // it took the job, then died without a word
    expect(await expireLeasesAfter(60_000)).not.toContain(job.id); // not yet: the lease is JOB_LEASE_S long
    expect(await expireLeasesAfter(env.JOB_LEASE_S * 1000 + 1)).toContain(job.id);
    const second = await leasedTo(other, job.id, 2);
    expect(second.attempt).toBe(2);
    const mid = await json<Job>(await call(`/v1/fine_tuning/jobs/${job.id}`, { key: t.key }));
    expect(mid).toMatchObject({ status: 'running', attempt: 2 });
    await other.sendEvent(second, { event_id: 'l1', type: 'progress', step: 6 });
    await other.sendEvent(second, {
      event_id: 'l2',
      type: 'succeeded',
      adapter: manifestFor(second),
      billed_training_tokens: 10,
    });
    const done = await json<Job>(await call(`/v1/fine_tuning/jobs/${job.id}`, { key: t.key }));
    expect(done).toMatchObject({ status: 'succeeded', attempt: 2 });
    const events = await json<{ data: { type: string; message: string }[] }>(
      await call(`/v1/fine_tuning/jobs/${job.id}/events`, { key: t.key }),
    );
    expect(events.data.map((e) => e.type)).toEqual([
      'created',
      'dispatched',
      'lease_expired',
      'dispatched',
      'progress',
      'succeeded',
    ]);
    expect(events.data[3]!.message).toContain('resuming from step 5');
  });

  it('fails the job with a reason after the retry limit of lease expiries', async () => {
    const t = await newTenant();
    const file = await uploadFile(t.key);
    const job = await json<Job>(await createJob(t.key, { model: 'ladder-tiny', training_file: file.id }));
    for (let attempt = 1; attempt <= env.JOB_MAX_ATTEMPTS; attempt++) {
      await eventually(async () =>
        [...a.jobs, ...b.jobs].find((j) => j.job_id === job.id && j.attempt === attempt),
      );
      await eventually(async () =>
        (await expireLeasesAfter(env.JOB_LEASE_S * 1000 + 1)).length ? true : undefined,
      );
    }
    const failed = await json<Job>(await call(`/v1/fine_tuning/jobs/${job.id}`, { key: t.key }));
    expect(failed.status).toBe('failed');
    expect(failed.attempt).toBe(env.JOB_MAX_ATTEMPTS);
    expect(failed.error).toMatchObject({ code: 'lease_expired' });
    expect(failed.error!.message).toContain(`after ${env.JOB_MAX_ATTEMPTS} attempts`);
  });

  it('cancels a running job; the worker learns it from its next callback', async () => {
    const t = await newTenant();
    const file = await uploadFile(t.key);
    const job = await json<Job>(await createJob(t.key, { model: 'ladder-tiny', training_file: file.id }));
    const start = await eventually(async () => [...a.jobs, ...b.jobs].find((j) => j.job_id === job.id));
    const worker = a.jobs.includes(start) ? a : b;
    expect(
      (await json<Job>(await call(`/v1/fine_tuning/jobs/${job.id}/cancel`, { key: t.key, method: 'POST' })))
        .status,
    ).toBe('cancelled');
    expect(
      await json(await worker.sendEvent(start, { event_id: 'c1', type: 'progress', step: 1 })),
    ).toMatchObject({ job_status: 'cancelled' });
    expect((await call(`/v1/fine_tuning/jobs/${job.id}/cancel`, { key: t.key, method: 'POST' })).status).toBe(
      400,
    );
    expect(
      await runInDurableObject(registryStub(), (reg: WorkerRegistry) => reg.leases().map((l) => l.job_id)),
    ).not.toContain(job.id);
  });
});
