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
  created_at: number;
  finished_at: number | null;
  fine_tuned_model: string | null;
  trained_tokens: number | null;
  hyperparameters: Record<string, number | string>;
  method: { type: string } & Partial<Record<'supervised' | 'lst' | 'xladder', MethodOptions>>;
  result_files: string[];
  estimated_finish: number | null;
  error: { code: string; message: string; param: string | null } | null;
};
type MethodOptions = { hyperparameters: Record<string, number | string> };
type Event = {
  id: string;
  object: string;
  type: string;
  level: string;
  message: string;
  data: Record<string, unknown>;
};
type Checkpoint = Record<string, unknown>;

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
    // metadata[<key>]=<value>, as OpenAI's client sends a metadata filter
    const tagged = await json<Job>(
      await createJob(t.key, { model: 'ladder-tiny', training_file: file.id, metadata: { 'team.x': 'a b' } }),
    );
    const filtered = await json<{ data: Job[] }>(
      await call(`/v1/fine_tuning/jobs?${new URLSearchParams({ 'metadata[team.x]': 'a b' })}`, {
        key: t.key,
      }),
    );
    expect(filtered.data.map((j) => j.id)).toEqual([tagged.id]);
  });

  it('runs: files validated -> lease -> signed callbacks -> adapter, hyperparameters, events, checkpoints, result file, usage once', async () => {
    const t = await newTenant();
    const file = await uploadFile(t.key);
    const job = await json<Job>(
      await createJob(t.key, {
        model: 'ladder-tiny',
        training_file: file.id,
        method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 'auto', batch_size: 4 } } },
        suffix: 'demo',
      }),
    );
    expect(job).toMatchObject({
      object: 'fine_tuning.job',
      status: 'validating_files',
      organization_id: t.id,
      hyperparameters: { n_epochs: 'auto', batch_size: 4, learning_rate_multiplier: 'auto' },
      method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 'auto', batch_size: 4 } } },
      result_files: [],
      estimated_finish: null,
      trained_tokens: null,
      error: null,
    });
    const start: StartJobRequest = await eventually(async () =>
      [...a.jobs, ...b.jobs].find((j) => j.job_id === job.id),
    );
    const worker = a.jobs.includes(start) ? a : b;
    // supervised is the default side net, LST; 'auto' goes to the worker as 'auto'
    expect(start).toMatchObject({
      tenant: t.id,
      attempt: 1,
      suffix: 'demo',
      method: {
        type: 'lst',
        hyperparameters: { n_epochs: 'auto', batch_size: 4, learning_rate_multiplier: 'auto' },
      },
    });
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

    const resolved = { n_epochs: 12, batch_size: 4, learning_rate_multiplier: 1, learning_rate: 0.003 };
    expect(
      (await worker.sendEvent(start, { event_id: 'e1', type: 'started', hyperparameters: resolved })).status,
    ).toBe(200);
    const running = await json<Job>(await call(`/v1/fine_tuning/jobs/${job.id}`, { key: t.key }));
    expect(running.hyperparameters).toEqual({ n_epochs: 12, batch_size: 4, learning_rate_multiplier: 1 });
    expect(running.method.supervised?.hyperparameters).toMatchObject({ ...resolved, warmup_ratio: 0.05 });
    const metrics = (step: number, extra: Record<string, number> = {}) => ({
      step,
      train_loss: 2 - step / 10,
      train_mean_token_accuracy: step / 10,
      ...extra,
    });
    await worker.sendEvent(start, {
      event_id: 'e2',
      type: 'metrics',
      step: 5,
      total_steps: 10,
      eta_s: 60,
      metrics: metrics(5, { valid_loss: 1.6, valid_mean_token_accuracy: 0.4 }),
    });
    const withEta = await json<Job>(await call(`/v1/fine_tuning/jobs/${job.id}`, { key: t.key }));
    expect(withEta.estimated_finish).toBeGreaterThanOrEqual(Math.floor(Date.now() / 1000) + 55);
    await worker.sendEvent(start, { event_id: 'e3', type: 'checkpoint', step: 5, metrics: metrics(5) });
    await worker.sendEvent(start, { event_id: 'e3b', type: 'warning', message: '2 examples were truncated' });
    await worker.sendEvent(start, {
      event_id: 'e3c',
      type: 'metrics',
      step: 10,
      total_steps: 10,
      metrics: metrics(10),
    });
    const final = {
      event_id: 'e4',
      type: 'succeeded' as const,
      step: 10,
      total_steps: 10,
      metrics: metrics(10, { full_valid_loss: 1.1, full_valid_mean_token_accuracy: 0.9 }),
      adapter: manifestFor(start),
      billed_training_tokens: 5000,
      trained_tokens: 5000,
    };
    expect(await json(await worker.sendEvent(start, final))).toMatchObject({
      duplicate: false,
      job_status: 'succeeded',
    });
    // a redelivered final event (and a re-sent metrics event) changes nothing
    expect(await json(await worker.sendEvent(start, final))).toMatchObject({ duplicate: true });
    expect(await json(await worker.sendEvent(start, { ...final, event_id: 'e4-retry' }))).toMatchObject({
      duplicate: false,
    });
    await worker.sendEvent(start, {
      event_id: 'e2',
      type: 'metrics',
      step: 5,
      total_steps: 10,
      metrics: metrics(5),
    });

    const done = await json<Job>(await call(`/v1/fine_tuning/jobs/${job.id}`, { key: t.key }));
    expect(done).toMatchObject({
      status: 'succeeded',
      trained_tokens: 5000,
      fine_tuned_model: `ft:ladder-tiny:demo:adp-${job.id}`,
      estimated_finish: null,
    });
    expect(done.finished_at).toBeGreaterThanOrEqual(done.created_at);

    // events: newest first, OpenAI's two types, messages in its words
    const events = await json<{ data: Event[]; has_more: boolean }>(
      await call(`/v1/fine_tuning/jobs/${job.id}/events?limit=100`, { key: t.key }),
    );
    expect(events.has_more).toBe(false);
    const oldestFirst = events.data.toReversed();
    expect(oldestFirst.map((e) => e.message)).toEqual([
      `Created fine-tuning job: ${job.id}`,
      `Validating training file: ${file.id}`,
      'Files validated, moving job to queued state',
      expect.stringMatching(/^Leased to worker stand-in-[ab] \(attempt 1\)$/),
      'Fine-tuning job started',
      'Step 5/10: training loss=1.5, validation loss=1.6',
      'Checkpoint created at step 5',
      '2 examples were truncated',
      'Step 10/10: training loss=1',
      `New fine-tuned model created: ${done.fine_tuned_model}`,
      'The job has successfully completed',
      // the retry with another id, after the job had ended: recorded, with no effect
      'Fine-tuning job succeeded',
    ]);
    expect(oldestFirst.map((e) => e.type)).toEqual([
      ...Array(5).fill('message'),
      'metrics',
      'message',
      'message',
      'metrics',
      ...Array(3).fill('message'),
    ]);
    expect(oldestFirst.map((e) => e.level)[7]).toBe('warn');
    expect(oldestFirst.every((e) => e.object === 'fine_tuning.job.event')).toBe(true);
    expect(oldestFirst[5]!.data).toMatchObject({
      step: 5,
      total_steps: 10,
      train_loss: 1.5,
      train_mean_token_accuracy: 0.5,
      valid_loss: 1.6,
      valid_mean_token_accuracy: 0.4,
    });
    const page1 = await json<{ data: Event[]; has_more: boolean }>(
      await call(`/v1/fine_tuning/jobs/${job.id}/events?limit=5`, { key: t.key }),
    );
    expect(page1.has_more).toBe(true);
    const page2 = await json<{ data: Event[]; has_more: boolean }>(
      await call(`/v1/fine_tuning/jobs/${job.id}/events?limit=10&after=${page1.data.at(-1)!.id}`, {
        key: t.key,
      }),
    );
    expect([...page1.data, ...page2.data].map((e) => e.id)).toEqual(events.data.map((e) => e.id));
    expect(page2.has_more).toBe(false);

    // the stream: oldest first, and from Last-Event-ID on
    const sse = await call(`/v1/fine_tuning/jobs/${job.id}/events?stream=true`, { key: t.key });
    expect(sse.headers.get('content-type')).toContain('text/event-stream');
    const sseText = await sse.text();
    expect(sseText.match(/event: fine_tuning.job.event/g)).toHaveLength(12);
    expect(sseText.trim().endsWith('data: [DONE]')).toBe(true);
    const resumed = await call(`/v1/fine_tuning/jobs/${job.id}/events`, {
      key: t.key,
      headers: { accept: 'text/event-stream', 'last-event-id': oldestFirst[8]!.id },
    });
    const resumedIds = [...(await resumed.text()).matchAll(/^id: (.+)$/gm)].map((m) => m[1]);
    expect(resumedIds).toEqual(oldestFirst.slice(9).map((e) => e.id));

    const ckpts = await json<{ data: Checkpoint[] }>(
      await call(`/v1/fine_tuning/jobs/${job.id}/checkpoints`, { key: t.key }),
    );
    expect(ckpts.data).toEqual([
      {
        id: expect.any(String),
        object: 'fine_tuning.job.checkpoint',
        created_at: expect.any(Number),
        fine_tuned_model_checkpoint: `${done.fine_tuned_model}:ckpt-step-5`,
        fine_tuning_job_id: job.id,
        step_number: 5,
        metrics: { step: 5, train_loss: 1.5, train_mean_token_accuracy: 0.5 },
      },
    ]);

    // the result file: OpenAI's columns, one row a step, the full validation figures on the last
    expect(done.result_files).toHaveLength(1);
    const resultId = done.result_files[0]!;
    expect(await json(await call(`/v1/files/${resultId}`, { key: t.key }))).toMatchObject({
      id: resultId,
      object: 'file',
      purpose: 'fine-tune-results',
      format: null,
    });
    const csv = await call(`/v1/files/${resultId}/content`, { key: t.key });
    expect(csv.headers.get('content-type')).toBe('text/csv');
    expect(await csv.text()).toBe(
      [
        'step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy,full_valid_loss,full_valid_mean_token_accuracy',
        '5,1.5,0.5,1.6,0.4,,',
        '10,1,1,,,1.1,0.9',
        '',
      ].join('\n'),
    );
    // a result file is not training data
    const reuse = await json<ApiErrorBody>(
      await createJob(t.key, { model: 'ladder-tiny', training_file: resultId }),
      400,
    );
    expect(reuse.error).toMatchObject({ param: 'training_file', code: 'invalid_file_purpose' });
    const other = await newTenant('other');
    expect((await call(`/v1/files/${resultId}/content`, { key: other.key })).status).toBe(404);

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
    expect((await signedPost(path, event, { workerId: 'stand-in-a', secret: 'not-the-secret' })).status).toBe(
      401,
    );
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
    const events = await json<{ data: Event[] }>(
      await call(`/v1/fine_tuning/jobs/${job.id}/events`, { key: t.key }),
    );
    const messages = events.data.map((e) => e.message).toReversed();
    expect(messages.slice(3)).toEqual([
      expect.stringMatching(/^Leased to worker .+ \(attempt 1\)$/),
      expect.stringMatching(/made no progress for \d+s; re-dispatching \(attempt 2 of 3\)$/),
      expect.stringMatching(/^Leased to worker .+ \(attempt 2\), resuming from step 5$/),
      'Step 6/0',
      expect.stringMatching(/^New fine-tuned model created: /),
      'The job has successfully completed',
    ]);
    expect(events.data.find((e) => e.message.includes('re-dispatching'))!.level).toBe('warn');
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

  it('pauses a running job (its worker checkpoints and stops) and resumes it with the next attempt', async () => {
    const t = await newTenant();
    const file = await uploadFile(t.key);
    const job = await json<Job>(await createJob(t.key, { model: 'ladder-tiny', training_file: file.id }));
    const start = await eventually(async () => [...a.jobs, ...b.jobs].find((j) => j.job_id === job.id));
    const worker = a.jobs.includes(start) ? a : b;
    const post = (action: string) =>
      call(`/v1/fine_tuning/jobs/${job.id}/${action}`, { key: t.key, method: 'POST' });
    expect((await json<ApiErrorBody>(await post('resume'), 400)).error.code).toBe('job_not_resumable');
    await worker.sendEvent(start, {
      event_id: 'p1',
      type: 'progress',
      step: 2,
      total_steps: 8,
      tokens_per_s: 1500,
      eta_s: 30,
    });

    expect((await json<Job>(await post('pause'))).status).toBe('paused');
    expect(await eventually(async () => worker.controls.find((c) => c.job_id === job.id))).toEqual({
      job_id: job.id,
      action: 'pause',
    });
    expect(
      await runInDurableObject(registryStub(), (reg: WorkerRegistry) => reg.leases().map((l) => l.job_id)),
    ).not.toContain(job.id);
    expect((await json<ApiErrorBody>(await post('pause'), 400)).error.code).toBe('job_not_pausable');
    expect(
      await json(await worker.sendEvent(start, { event_id: `${job.id}-paused-a1`, type: 'paused', step: 3 })),
    ).toMatchObject({ job_status: 'paused' });

    const resumed = await json<Job>(await post('resume'));
    expect(resumed).toMatchObject({ status: 'queued', attempt: 2 });
    const second = await eventually(async () =>
      [...a.jobs, ...b.jobs].find((j) => j.job_id === job.id && j.attempt === 2),
    );
    expect((await json<Job>(await call(`/v1/fine_tuning/jobs/${job.id}`, { key: t.key }))).status).toBe(
      'running',
    );
    // A pause event that arrives late changes nothing about the resumed attempt.
    expect(
      await json(await worker.sendEvent(start, { event_id: 'late-pause', type: 'paused', step: 3 })),
    ).toMatchObject({ job_status: 'running' });
    // A resume is not a failed attempt: a lease expiry after it is the first of JOB_MAX_ATTEMPTS.
    expect(await expireLeasesAfter(env.JOB_LEASE_S * 1000 + 1)).toContain(job.id);
    await eventually(async () => [...a.jobs, ...b.jobs].find((j) => j.job_id === job.id && j.attempt === 3));
    const events = await json<{ data: Event[] }>(
      await call(`/v1/fine_tuning/jobs/${job.id}/events`, { key: t.key }),
    );
    expect(
      events.data
        .map((e) => e.message)
        .toReversed()
        .slice(4),
    ).toEqual([
      'Step 2/8: 1500 tokens/s, about 30s left',
      'Pausing fine-tuning job: the worker saves a checkpoint and stops',
      'Fine-tuning job paused at step 3',
      'Fine-tuning job resumed',
      expect.stringMatching(/\(attempt 2\), resuming from step 5$/),
      'Fine-tuning job paused at step 3',
      expect.stringMatching(/re-dispatching \(attempt 2 of 3\)$/),
      expect.stringMatching(/\(attempt 3\), resuming from step 5$/),
    ]);
    expect(second.method).toEqual(start.method);
  });

  it('cancels a running job: its worker is told, and learns it from its next callback too', async () => {
    const t = await newTenant();
    const file = await uploadFile(t.key);
    const job = await json<Job>(await createJob(t.key, { model: 'ladder-tiny', training_file: file.id }));
    const start = await eventually(async () => [...a.jobs, ...b.jobs].find((j) => j.job_id === job.id));
    const worker = a.jobs.includes(start) ? a : b;
    expect(
      (await json<Job>(await call(`/v1/fine_tuning/jobs/${job.id}/cancel`, { key: t.key, method: 'POST' })))
        .status,
    ).toBe('cancelled');
    // the worker is told at once, and the answer to its next callback says it too
    expect(await eventually(async () => worker.controls.find((c) => c.job_id === job.id))).toEqual({
      job_id: job.id,
      action: 'cancel',
    });
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

  it('bills a cancelled job what it trained, once; a run that ends after the cancel is billed, never registered, and purged', async () => {
    const t = await newTenant('canceller', { concurrent_jobs: 10 });
    const file = await uploadFile(t.key);
    const usage = async () =>
      (
        await json<{ data: { model: string; training_tokens: number }[] }>(
          await call('/v1/usage', { key: t.key }),
        )
      ).data;
    const cancelled = async () => {
      const job = await json<Job>(await createJob(t.key, { model: 'ladder-tiny', training_file: file.id }));
      const start = await eventually(async () => [...a.jobs, ...b.jobs].find((j) => j.job_id === job.id));
      const worker = a.jobs.includes(start) ? a : b;
      await worker.sendEvent(start, { event_id: `${job.id}-p1`, type: 'progress', step: 1 });
      const res = await call(`/v1/fine_tuning/jobs/${job.id}/cancel`, { key: t.key, method: 'POST' });
      expect((await json<Job>(res)).status).toBe('cancelled');
      return { job, start, worker };
    };

    // The worker stops and reports what it trained: billed once, whatever the event ids.
    const first = await cancelled();
    const stop = { type: 'cancelled' as const, step: 3, billed_training_tokens: 300, trained_tokens: 300 };
    expect(
      await json(
        await first.worker.sendEvent(first.start, { ...stop, event_id: `${first.job.id}-cancelled` }),
      ),
    ).toMatchObject({ duplicate: false, job_status: 'cancelled' });
    await first.worker.sendEvent(first.start, { ...stop, event_id: 'another-id', trained_tokens: 999 });
    expect(await usage()).toEqual([expect.objectContaining({ model: 'ladder-tiny', training_tokens: 300 })]);
    const firstJob = await json<Job>(await call(`/v1/fine_tuning/jobs/${first.job.id}`, { key: t.key }));
    expect(firstJob).toMatchObject({ status: 'cancelled', trained_tokens: 300, fine_tuned_model: null });

    // A run that finished before its worker heard of the cancel: billed, the job stays cancelled,
    // no model is registered, and every worker is told to delete the adapter.
    const second = await cancelled();
    const manifest = manifestFor(second.start);
    const late = await second.worker.sendEvent(second.start, {
      event_id: `${second.job.id}-succeeded`,
      type: 'succeeded',
      step: 10,
      adapter: manifest,
      billed_training_tokens: 1000,
      trained_tokens: 1000,
    });
    expect(await json(late)).toMatchObject({ duplicate: false, job_status: 'cancelled' });
    expect(await usage()).toEqual([expect.objectContaining({ model: 'ladder-tiny', training_tokens: 1300 })]);
    const secondJob = await json<Job>(await call(`/v1/fine_tuning/jobs/${second.job.id}`, { key: t.key }));
    expect(secondJob).toMatchObject({ status: 'cancelled', trained_tokens: 1000, fine_tuned_model: null });
    const models = await json<{ data: { id: string; kind: string }[] }>(
      await call('/v1/models', { key: t.key }),
    );
    expect(models.data.filter((m) => m.kind === 'adapter')).toEqual([]);
    const purge = {
      tenant: t.id,
      job_id: second.job.id,
      adapter: { adapter_id: manifest.adapter_id, version: 1 },
    };
    for (const w of [a, b]) expect(w.purges).toEqual([purge]);
  });
});
