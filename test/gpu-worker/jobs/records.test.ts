import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobRecordStore, recoveredRecord } from '../../../gpu-worker/src/jobs/records.ts';
import { StartJobRequest } from '../../../schemas/index.ts';
import { writeTinyCheckpoint } from '../../helpers/tiny-checkpoint.ts';
import { StandInEdge, signed, spawnWorker } from '../server/helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'ladder-records-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const request = (id: string) =>
  StartJobRequest.parse({
    job_id: id,
    tenant: 'tenant-r',
    training_file_url: 'http://127.0.0.1:1/files/train.jsonl',
    method: { type: 'lst', hyperparameters: {} },
    callback_url: `http://127.0.0.1:1/events/${id}`,
  });

describe('job records', () => {
  it('quarantines a truncated record and one that fails its schema, keeping the readable ones; a surviving request is requeued', () => {
    const dir = join(root, 'unit');
    const logs: string[] = [];
    const store = new JobRecordStore(dir, (l) => logs.push(l));
    store.put({ ...recoveredRecord(request('good')), status: 'succeeded' });
    store.put(recoveredRecord(request('torn')));
    store.put({ ...recoveredRecord(request('skewed')), status: 'running', step: 7 });
    const torn = join(dir, 'torn.json');
    truncateSync(torn, Math.floor(readFileSync(torn).length / 2));
    const skewed = JSON.parse(readFileSync(join(dir, 'skewed.json'), 'utf8'));
    writeFileSync(join(dir, 'skewed.json'), JSON.stringify({ ...skewed, step: -1 }));

    const reopened = new JobRecordStore(dir, (l) => logs.push(l));
    const all = reopened.all();
    expect(all.map((r) => [r.request.job_id, r.status]).sort()).toEqual([
      ['good', 'succeeded'],
      ['skewed', 'queued'],
    ]);
    expect(reopened.quarantined.map((q) => [q.jobId, q.request?.job_id])).toEqual(
      expect.arrayContaining([
        ['torn', undefined],
        ['skewed', 'skewed'],
      ]),
    );
    expect(existsSync(torn)).toBe(false);
    expect(readdirSync(join(dir, 'quarantine'))).toHaveLength(2);
    expect(logs.join('\n')).toMatch(/job record torn is corrupt and was moved to .*quarantine/);
    // The salvaged record was rewritten whole: a third open reads it without quarantining.
    const third = new JobRecordStore(dir, () => {});
    expect(third.all()).toHaveLength(2);
    expect(third.quarantined).toHaveLength(0);
    // No temp file is left beside the records.
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('a worker with a torn job record', () => {
  let edge: StandInEdge;
  let backboneDir: string;
  beforeAll(async () => {
    edge = await new StandInEdge().start();
    const lines = Array.from({ length: 24 }, (_, i) =>
      JSON.stringify({ text: `the ${i % 2 ? 'cat' : 'dog'} is ${i}`, label: i % 2 ? 'yes' : 'no' }),
    );
    edge.files.set('train.jsonl', `${lines.join('\n')}\n`);
    backboneDir = (await writeTinyCheckpoint(join(root, 'backbone'), { architecture: 'llama', seed: 5 })).dir;
  }, 60_000);
  afterAll(async () => edge.close());

  it('becomes ready, and the job re-dispatched by the edge resumes from its intact checkpoint and finishes', async () => {
    const dataDir = join(root, 'worker');
    const env = {
      LADDER_BACKBONE_DIR: backboneDir,
      LADDER_CACHE_DIR: join(root, 'build-cache'),
      LADDER_DATA_DIR: dataDir,
      LADDER_CHECKPOINT_EVERY_STEPS: '2',
      LADDER_ACTIVATION_CACHE: 'false',
    };
    const job = (attempt: number) => ({
      job_id: 'torn-job',
      tenant: 'tenant-r',
      attempt,
      training_file_url: `${edge.url}/files/train.jsonl`,
      method: { type: 'lst', hyperparameters: { n_epochs: 4, batch_tokens: 64, learning_rate: 0.01 } },
      seed: 3,
      callback_url: `${edge.url}/events/torn-job`,
    });
    const until = async <T>(what: string, f: () => T | undefined, ms = 90_000): Promise<T> => {
      const end = Date.now() + ms;
      for (;;) {
        const v = f();
        if (v !== undefined) return v;
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    let worker = await spawnWorker(env);
    expect((await signed(worker.url, '/internal/v1/jobs', job(1))).status).toBe(200);
    const checkpoint = await until('a checkpoint', () =>
      edge.events('torn-job').find((e) => e.type === 'checkpoint' && e.step >= 2),
    );
    await worker.kill();
    const record = join(dataDir, 'jobs', 'torn-job.json');
    truncateSync(record, 40); // what a write cut off without fsync leaves

    worker = await spawnWorker(env);
    try {
      expect(worker.output()).toMatch(/job record torn-job is corrupt/);
      expect((await fetch(`${worker.url}/readyz`)).status).toBe(200);
      const ack = await signed(worker.url, '/internal/v1/jobs', job(2));
      expect(ack.status).toBe(200);
      expect(((await ack.json()) as { resumed_from_step: number }).resumed_from_step).toBeGreaterThanOrEqual(
        checkpoint.step,
      );
      const done = await until('the job to end', () =>
        edge.events('torn-job').find((e) => e.type === 'succeeded' || e.type === 'failed'),
      );
      expect(done.type, done.message).toBe('succeeded');
    } finally {
      await worker.stop();
    }
  }, 240_000);
});
