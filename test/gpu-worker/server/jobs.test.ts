import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsAdapterStore } from '../../../adapters/index.ts';
import { type JobEvent, StartJobResponse } from '../../../schemas/index.ts';
import { writeTinyCheckpoint } from '../../helpers/tiny-checkpoint.ts';
import { metric, StandInEdge, signed, spawnWorker } from './helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'ladder-jobs-'));
let edge: StandInEdge;
let backboneDir: string;

/** Classification lines the tiny model can learn: the label says whether the text mentions a cat. */
function dataset(n: number): string {
  const words = ['the', 'and', 'is', 'of', 'World', 'Hello', 'or', 'at', 'system'];
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const cat = i % 2 === 0;
    const body = [words[i % words.length], words[(i * 3 + 1) % words.length], cat ? 'cat' : 'dog'].join(' ');
    lines.push(JSON.stringify({ text: body, label: cat ? 'yes' : 'no' }));
  }
  return `${lines.join('\n')}\n`;
}

const env = (dataDir: string) => ({
  LADDER_BACKBONE_DIR: backboneDir,
  LADDER_CACHE_DIR: join(root, 'build-cache'),
  LADDER_DATA_DIR: dataDir,
  LADDER_CHECKPOINT_EVERY_STEPS: '3',
  LADDER_ACTIVATION_CACHE: 'false',
  LADDER_EDGE_URL: edge.url,
  LADDER_HEARTBEAT_MS: '500',
});

const job = (id: string, over: Record<string, unknown> = {}) => ({
  job_id: id,
  tenant: 'tenant-t',
  training_file_url: `${edge.url}/files/train.jsonl`,
  method: {
    type: 'lst',
    hyperparameters: { n_epochs: 4, batch_tokens: 64, learning_rate: 0.01, validation_fraction: 0.2 },
  },
  seed: 7,
  callback_url: `${edge.url}/events/${id}`,
  ...over,
});

async function until<T>(
  what: string,
  f: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 60_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const finalOf = (id: string) => () =>
  edge.events(id).find((e) => e.type === 'succeeded' || e.type === 'failed');

beforeAll(async () => {
  edge = await new StandInEdge().start();
  edge.files.set('train.jsonl', dataset(40));
  backboneDir = (await writeTinyCheckpoint(join(root, 'backbone'), { architecture: 'llama', seed: 5 })).dir;
}, 60_000);

afterAll(async () => {
  await edge.close();
  rmSync(root, { recursive: true, force: true });
});

describe('training jobs', () => {
  let reference: JobEvent;

  it('trains a job to a published adapter, reporting signed progress, billed tokens once, and heartbeats', async () => {
    const worker = await spawnWorker(env(join(root, 'ref-data')));
    try {
      const first = await signed(worker.url, '/internal/v1/jobs', job('ref-job'));
      expect(first.status, await first.clone().text()).toBe(200);
      expect(StartJobResponse.parse(await first.json())).toMatchObject({
        job_id: 'ref-job',
        resumed_from_step: 0,
      });
      // Idempotent by job id (a byte-identical request in the same second would be a replay).
      const again = await signed(worker.url, '/internal/v1/jobs', { ...job('ref-job'), attempt: 1 });
      expect((await again.json()) as object).toMatchObject({ job_id: 'ref-job' });

      reference = await until('the reference job to end', finalOf('ref-job'));
      expect(reference.type, reference.message).toBe('succeeded');
      expect(reference.adapter?.adapter_id).toBe('ref-job');
      expect(reference.billed_training_tokens).toBeGreaterThan(0);
      const progress = edge.events('ref-job').filter((e) => e.type === 'progress');
      expect(progress.map((e) => e.step)).toEqual(Array.from({ length: reference.step }, (_, i) => i + 1));
      expect(edge.rejected).toBe(0);
      expect(await metric(worker.url, 'ladder_training_steps_total')).toBe(reference.step);

      const status = await signed(worker.url, '/internal/v1/jobs/ref-job', undefined, { method: 'GET' });
      expect(await status.json()).toMatchObject({
        status: 'succeeded',
        billed_training_tokens: reference.billed_training_tokens,
      });
      await until('a heartbeat', () => (edge.heartbeats.length ? true : undefined));
      expect(edge.heartbeats[0]).toMatchObject({ capacity: { max_queue: 256 } });
    } finally {
      await worker.stop();
    }
  }, 120_000);

  it("reports each step's metrics in 'metrics' events, validation metrics at its steps and full_valid_* at the end", () => {
    const events = edge.events('ref-job');
    const started = events.find((e) => e.type === 'started')!;
    expect(started.hyperparameters).toMatchObject({ n_epochs: 4, learning_rate: 0.01 });
    expect(started.total_steps).toBe(reference.step);
    const metrics = events.filter((e) => e.type === 'metrics');
    // Under 500 steps: one per step, each with its own step's training metrics.
    expect(metrics.map((e) => e.step)).toEqual(Array.from({ length: reference.step }, (_, i) => i + 1));
    for (const e of metrics) {
      expect(e.metrics?.step).toBe(e.step);
      expect(e.metrics?.train_loss).toBe(e.loss);
      expect(e.metrics?.train_mean_token_accuracy).toBeGreaterThanOrEqual(0);
      expect(e.metrics?.train_mean_token_accuracy).toBeLessThanOrEqual(1);
    }
    // The validation sample every ceil(steps / 10) updates and at the last: those events carry valid_*.
    const every = Math.ceil(reference.step / 10);
    const validated = metrics.filter((e) => e.metrics?.valid_loss !== undefined).map((e) => e.step);
    expect(validated).toEqual(
      metrics.map((e) => e.step).filter((s) => s % every === 0 || s === reference.step),
    );
    for (const e of metrics.filter((m) => m.metrics?.valid_loss !== undefined)) {
      expect(e.eval_loss).toBe(e.metrics!.valid_loss);
      expect(e.metrics!.valid_mean_token_accuracy).toBeGreaterThanOrEqual(0);
    }
    // Checkpoints carry their step's metrics; the final event the whole validation set's.
    for (const c of events.filter((e) => e.type === 'checkpoint' && e.step > 0))
      expect(c.metrics).toEqual(metrics.find((m) => m.step === c.step)!.metrics);
    expect(reference.metrics).toMatchObject({ step: reference.step });
    expect(reference.metrics?.full_valid_loss).toBe(reference.eval_loss);
    expect(reference.metrics?.full_valid_mean_token_accuracy).toBeGreaterThan(0);
    expect(reference.trained_tokens).toBeGreaterThan(0);
  });

  it('pauses a running job at a checkpoint and resumes it under a higher attempt: the same adapter, no step twice', async () => {
    const worker = await spawnWorker(env(join(root, 'pause-data')));
    try {
      expect((await signed(worker.url, '/internal/v1/jobs', job('pause-job'))).status).toBe(200);
      await until('a checkpoint', () =>
        edge.events('pause-job').find((e) => e.type === 'checkpoint' && e.step >= 3),
      );
      const pause = await signed(worker.url, '/internal/v1/jobs/pause-job/pause', {});
      expect(pause.status).toBe(200);
      const paused = await until('the paused event', () =>
        edge.events('pause-job').find((e) => e.type === 'paused'),
      );
      expect(paused.event_id).toBe('pause-job-paused-a1');
      expect(finalOf('pause-job')()).toBeUndefined(); // it stopped before the end
      const view = (await (
        await signed(worker.url, '/internal/v1/jobs/pause-job', undefined, { method: 'GET' })
      ).json()) as { status: string; step: number };
      expect(view.status).toBe('paused');
      expect(view.step).toBeLessThan(reference.step);
      // A repeat of the same attempt does not resume it.
      const same = StartJobResponse.parse(
        await (await signed(worker.url, '/internal/v1/jobs', { ...job('pause-job'), attempt: 1 })).json(),
      );
      expect(same.status).toBe('paused');
      const stepsAtPause = edge.events('pause-job').filter((e) => e.type === 'progress').length;

      const resumed = StartJobResponse.parse(
        await (await signed(worker.url, '/internal/v1/jobs', { ...job('pause-job'), attempt: 2 })).json(),
      );
      expect(resumed.status).toBe('queued');
      const done = await until('the resumed job to end', finalOf('pause-job'));
      expect(done.type, done.message).toBe('succeeded');
      const status = (await (
        await signed(worker.url, '/internal/v1/jobs/pause-job', undefined, { method: 'GET' })
      ).json()) as { resumed_from_step: number };
      expect(status.resumed_from_step).toBeGreaterThanOrEqual(3);
      expect(status.resumed_from_step).toBeGreaterThanOrEqual(stepsAtPause);
      expect(status.resumed_from_step).toBeLessThan(done.step);
      // Bit-exact continuation: the uninterrupted run's weights, steps reported once, billed once.
      expect(done.adapter!.weights.sha256).toBe(reference.adapter!.weights.sha256);
      expect(done.billed_training_tokens).toBe(reference.billed_training_tokens);
      const events = edge.events('pause-job');
      expect(events.filter((e) => e.type === 'progress').map((e) => e.step)).toEqual(
        Array.from({ length: done.step }, (_, i) => i + 1),
      );
      expect(events.filter((e) => e.type === 'started')).toHaveLength(1);
    } finally {
      await worker.stop();
    }
  }, 180_000);

  it('warns of examples longer than the context with their count and what was cut, and still trains', async () => {
    const worker = await spawnWorker(env(join(root, 'long-data')));
    try {
      const long = 'Hello World '.repeat(700); // well over the tiny backbone's 1024 positions
      const lines = [
        ...Array.from({ length: 6 }, (_, i) => ({ prompt: `k${i} =`, completion: ` v${i}` })),
        { prompt: long, completion: ' yes' },
        { prompt: `${long} again`, completion: ' no' },
        { prompt: 'short =', completion: ` ${long}` },
      ];
      edge.files.set('long-lines.jsonl', lines.map((l) => JSON.stringify(l)).join('\n'));
      const res = await signed(
        worker.url,
        '/internal/v1/jobs',
        job('long-job', {
          training_file_url: `${edge.url}/files/long-lines.jsonl`,
          method: { type: 'lst', hyperparameters: { n_epochs: 1, batch_size: 3, validation_fraction: 0 } },
        }),
      );
      expect(res.status, await res.clone().text()).toBe(200);
      const done = await until('the long job to end', finalOf('long-job'), 120_000);
      expect(done.type, done.message).toBe('succeeded');
      const events = edge.events('long-job');
      const warnings = events.filter((e) => e.type === 'warning');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.event_id).toBe('long-job-warning-0');
      expect(warnings[0]!.message).toMatch(/^3 training examples are longer than the 1024-token context: /);
      expect(warnings[0]!.message).toMatch(
        /2 had their prompt truncated from the left .*keeping the whole completion/,
      );
      expect(warnings[0]!.message).toMatch(/1 had a completion longer than the context by itself/);
      // It follows the started event, before any step.
      const order = events.map((e) => e.type);
      expect(order.indexOf('warning')).toBe(order.indexOf('started') + 1);
    } finally {
      await worker.stop();
    }
  }, 180_000);

  it('resumes a job SIGKILLed mid-training from its last checkpoint: same adapter, no duplicated progress or billing', async () => {
    const dataDir = join(root, 'crash-data');
    let worker = await spawnWorker(env(dataDir));
    const res = await signed(worker.url, '/internal/v1/jobs', job('crash-job'));
    expect(res.status).toBe(200);
    const checkpoint = await until('a checkpoint', () =>
      edge.events('crash-job').find((e) => e.type === 'checkpoint' && e.step >= 3),
    );
    await worker.kill();
    expect(finalOf('crash-job')()).toBeUndefined(); // it really was cut off mid-training
    const reportedBeforeKill = Math.max(
      ...edge.events('crash-job').map((e) => (e.type === 'progress' ? e.step : 0)),
    );

    worker = await spawnWorker(env(dataDir));
    try {
      const done = await until('the resumed job to end', finalOf('crash-job'));
      expect(done.type, done.message).toBe('succeeded');
      const status = (await (
        await signed(worker.url, '/internal/v1/jobs/crash-job', undefined, { method: 'GET' })
      ).json()) as { resumed_from_step: number };
      expect(status.resumed_from_step).toBeGreaterThanOrEqual(checkpoint.step);
      expect(status.resumed_from_step).toBeLessThan(done.step);

      // Bit-exact resume: the same weights (hence the same eval accuracy) as the uninterrupted run.
      expect(done.adapter!.weights.sha256).toBe(reference.adapter!.weights.sha256);
      expect(done.message).toBe(reference.message);
      expect(done.billed_training_tokens).toBe(reference.billed_training_tokens);

      const events = edge.events('crash-job');
      const progressSteps = events.filter((e) => e.type === 'progress').map((e) => e.step);
      expect(progressSteps).toEqual(Array.from({ length: done.step }, (_, i) => i + 1));
      expect(events.filter((e) => e.type === 'succeeded')).toHaveLength(1);
      // A repeat of one event (posted, then the kill before the outbox noted it) carries the same id and body.
      const posts = edge.posts.filter((p) => p.event.job_id === 'crash-job');
      for (const p of posts)
        expect(p.raw).toBe(posts.find((q) => q.event.event_id === p.event.event_id)!.raw);
      expect(posts.length - events.length).toBeLessThanOrEqual(1);
      expect(reportedBeforeKill).toBeLessThan(done.step);
    } finally {
      await worker.stop();
    }
  }, 180_000);

  it('refuses a job that cannot fit the memory budget, an invalid one, and cancels a running one', async () => {
    const worker = await spawnWorker({ ...env(join(root, 'refuse-data')), LADDER_MEMORY_BUDGET_MB: '64' });
    try {
      const big = await signed(
        worker.url,
        '/internal/v1/jobs',
        job('big-job', { method: { type: 'lst', hyperparameters: { batch_tokens: 1_048_576 } } }),
      );
      expect(big.status).toBe(422);
      expect(await big.text()).toMatch(/memory budget of 64 MB/);

      const bad = await signed(worker.url, '/internal/v1/jobs', {
        ...job('bad-job'),
        method: { type: 'lora' },
      });
      expect(bad.status).toBe(400);
      expect(await bad.text()).toMatch(/method\.type/);

      const deep = await signed(
        worker.url,
        '/internal/v1/jobs',
        job('deep-job', { method: { type: 'xladder', hyperparameters: { xladder_depth: 9 } } }),
      );
      expect(deep.status).toBe(400);

      const missing = await signed(worker.url, '/internal/v1/jobs/nope', undefined, { method: 'GET' });
      expect(missing.status).toBe(404);

      edge.files.set('long.jsonl', dataset(200));
      await signed(
        worker.url,
        '/internal/v1/jobs',
        job('cancel-job', { training_file_url: `${edge.url}/files/long.jsonl` }),
      );
      await until('progress', () => edge.events('cancel-job').find((e) => e.type === 'progress'));
      const cancelled = await signed(worker.url, '/internal/v1/jobs/cancel-job/cancel', {});
      expect(cancelled.status).toBe(200);
      const end = await until('the cancelled event', () =>
        edge.events('cancel-job').find((e) => e.type === 'cancelled'),
      );
      expect(end.message).toMatch(/stopped/);
    } finally {
      await worker.stop();
    }
  }, 120_000);

  it("stops a job when the edge's answer to its callback says cancelled (a cancel it was never sent): billed for what it trained, data deleted", async () => {
    const dataDir = join(root, 'edge-cancel-data');
    const worker = await spawnWorker(env(dataDir));
    try {
      edge.files.set('edge-cancel.jsonl', dataset(200));
      const res = await signed(
        worker.url,
        '/internal/v1/jobs',
        job('edge-cancel', { training_file_url: `${edge.url}/files/edge-cancel.jsonl` }),
      );
      expect(res.status).toBe(200);
      const first = await until('progress', () =>
        edge.events('edge-cancel').find((e) => e.type === 'progress'),
      );
      // The tenant cancels at the edge; the worker's POST .../cancel is never sent.
      edge.jobStatus.set('edge-cancel', 'cancelled');
      const end = await until(
        'the job to end',
        () => edge.events('edge-cancel').find((e) => ['succeeded', 'failed', 'cancelled'].includes(e.type)),
        120_000,
      );
      expect(end.type, end.message).toBe('cancelled');
      expect(end.event_id).toBe('edge-cancel-cancelled');
      expect(end.step).toBeLessThan(first.total_steps);
      // Billed: the tokens trained up to the stop, which the status also reports.
      expect(end.billed_training_tokens).toBeGreaterThan(0);
      expect(end.trained_tokens).toBe(end.billed_training_tokens);
      const view = (await (
        await signed(worker.url, '/internal/v1/jobs/edge-cancel', undefined, { method: 'GET' })
      ).json()) as { status: string; step: number };
      expect(view).toMatchObject({ status: 'cancelled', step: end.step });
      // Its checkpoints are deleted, and nothing was published.
      const store = new FsAdapterStore({ dataDir, tenant: 'tenant-t' });
      await until('the checkpoints to go', async () =>
        (await store.checkpoints.steps('edge-cancel')).length === 0 ? true : undefined,
      );
      expect((await store.list({ adapterId: 'edge-cancel' })).items).toEqual([]);
    } finally {
      await worker.stop();
    }
  }, 180_000);

  it('keeps a final event the edge refuses (a rotated secret) across a restart, and delivers it once accepted', async () => {
    const dataDir = join(root, 'refused-data');
    // The training file is gone: the job fails at once, so its only event is the final one.
    const request = job('refused-job', { training_file_url: `${edge.url}/files/missing.jsonl` });
    edge.refuse.set('refused-job', 401);
    let worker = await spawnWorker(env(dataDir));
    try {
      expect((await signed(worker.url, '/internal/v1/jobs', request)).status).toBe(200);
      await until('two refusals', () => (edge.refused.length >= 2 ? true : undefined));
      await worker.stop();
      expect(worker.output()).toMatch(
        /refused final event refused-job-failed \(HTTP 401, try 1\): kept, retrying/,
      );
      // On disk, still to be sent.
      const record = JSON.parse(readFileSync(join(dataDir, 'jobs', 'refused-job.json'), 'utf8')) as {
        status: string;
        outbox: JobEvent[];
      };
      expect(record.status).toBe('failed');
      expect(record.outbox.map((e) => e.event_id)).toEqual(['refused-job-failed']);
      expect(edge.events('refused-job')).toEqual([]);

      edge.refuse.delete('refused-job');
      worker = await spawnWorker(env(dataDir));
      const final = await until('the final event', finalOf('refused-job'));
      expect(final).toMatchObject({ event_id: 'refused-job-failed', type: 'failed' });
      expect(final.message).toMatch(/train file: GET \/files\/missing.jsonl answered 404/);
      expect(edge.refused.every((e) => e.event_id === 'refused-job-failed')).toBe(true);
    } finally {
      await worker.stop();
    }
  }, 180_000);
});
