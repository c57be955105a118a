import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

async function until<T>(what: string, f: () => T | undefined, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
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
});
