import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AdapterStore, FsAdapterStore, S3AdapterStore } from '../../../adapters/index.ts';
import { PurgeResponse } from '../../../schemas/index.ts';
import { type LocalS3, startLocalS3, TEST_CREDENTIALS } from '../../helpers/s3-server.ts';
import { writeTinyCheckpoint } from '../../helpers/tiny-checkpoint.ts';
import { StandInEdge, signed, spawnWorker } from '../server/helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'ladder-purge-'));
const TENANT = 'tenant-p';
let edge: StandInEdge;
let s3: LocalS3;
let backboneDir: string;

beforeAll(async () => {
  edge = await new StandInEdge().start();
  const lines = Array.from({ length: 24 }, (_, i) =>
    JSON.stringify({ text: `the ${i % 2 ? 'cat' : 'dog'} is ${i}`, label: i % 2 ? 'yes' : 'no' }),
  );
  edge.files.set('train.jsonl', `${lines.join('\n')}\n`);
  s3 = await startLocalS3('purge-test');
  backboneDir = (await writeTinyCheckpoint(join(root, 'backbone'), { architecture: 'llama', seed: 5 })).dir;
}, 60_000);

afterAll(async () => {
  await edge.close();
  await s3.stop();
  rmSync(root, { recursive: true, force: true });
});

async function until<T>(
  what: string,
  f: () => Promise<T | undefined> | T | undefined,
  ms = 90_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const job = (id: string, epochs: number) => ({
  job_id: id,
  tenant: TENANT,
  training_file_url: `${edge.url}/files/train.jsonl`,
  // A validation file too: the worker caches both copies.
  validation_file_url: `${edge.url}/files/train.jsonl`,
  method: { type: 'lst', hyperparameters: { n_epochs: epochs, batch_tokens: 64, learning_rate: 0.01 } },
  seed: 3,
  callback_url: `${edge.url}/events/${id}`,
});

/** What the store and the worker's disk still hold of a job. */
async function leftovers(store: AdapterStore, dataDir: string, jobId: string) {
  return {
    datasets: (await store.datasets.list()).names.length,
    checkpoints: (await store.checkpoints.steps(jobId)).length,
    activations: existsSync(join(dataDir, 'activations', jobId))
      ? readdirSync(join(dataDir, 'activations', jobId)).length
      : 0,
    adapters: (await store.list({ adapterId: jobId })).items.length,
  };
}

for (const backend of ['fs', 's3'] as const) {
  describe(`deleting a job's data (${backend} store)`, () => {
    const dataDir = join(root, `worker-${backend}`);
    const s3Env = (): Record<string, string> =>
      backend === 's3'
        ? {
            LADDER_S3_BUCKET: s3.bucket,
            LADDER_S3_ENDPOINT: s3.endpoint,
            LADDER_S3_REGION: 'us-east-1',
            LADDER_S3_FORCE_PATH_STYLE: 'true',
            LADDER_S3_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
            LADDER_S3_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
            LADDER_S3_PREFIX: 'purge',
          }
        : {};
    const store = () =>
      backend === 's3'
        ? new S3AdapterStore({ ...s3.storeOptions(), prefix: 'purge', tenant: TENANT })
        : new FsAdapterStore({ dataDir, tenant: TENANT });

    it('a finished job leaves only its adapter; a cancelled one nothing; purging the model deletes the adapter', async () => {
      const worker = await spawnWorker({
        LADDER_BACKBONE_DIR: backboneDir,
        LADDER_CACHE_DIR: join(root, 'build-cache'),
        LADDER_DATA_DIR: dataDir,
        LADDER_CHECKPOINT_EVERY_STEPS: '2',
        LADDER_ACTIVATION_CACHE: 'true',
        ...s3Env(),
      });
      const s = store();
      try {
        const ok = `done-${backend}`;
        const started = await signed(worker.url, '/internal/v1/jobs', job(ok, 3));
        expect(started.status, await started.clone().text()).toBe(200);
        const final = await until('the job to end', () =>
          edge.events(ok).find((e) => ['succeeded', 'failed'].includes(e.type)),
        );
        expect(final.type, final.message).toBe('succeeded');
        expect(edge.events(ok).some((e) => e.type === 'checkpoint')).toBe(true);
        await until('the finished job cleaned up', async () => {
          const l = await leftovers(s, dataDir, ok);
          return l.datasets + l.checkpoints + l.activations === 0 ? l : undefined;
        });
        expect((await leftovers(s, dataDir, ok)).adapters).toBe(1);

        // A cancelled job: its checkpoints, cached files and activation cache go too.
        const cancelled = `cancel-${backend}`;
        expect((await signed(worker.url, '/internal/v1/jobs', job(cancelled, 100))).status).toBe(200);
        await until('a checkpoint', () => edge.events(cancelled).find((e) => e.type === 'checkpoint'));
        expect((await leftovers(s, dataDir, cancelled)).checkpoints).toBeGreaterThan(0);
        const c = await signed(worker.url, `/internal/v1/jobs/${cancelled}/cancel`, {});
        expect(c.status, await c.clone().text()).toBe(200);
        await until('the cancel', () => edge.events(cancelled).find((e) => e.type === 'cancelled'));
        await until('the cancelled job cleaned up', async () => {
          const l = await leftovers(s, dataDir, cancelled);
          return l.datasets + l.checkpoints + l.activations + l.adapters === 0 ? l : undefined;
        });

        // The edge deleted the model: the adapter goes from the store (every version).
        const res = await signed(worker.url, '/internal/v1/purge', {
          tenant: TENANT,
          job_id: ok,
          adapter: { adapter_id: ok, version: 1 },
        });
        expect(res.status, await res.clone().text()).toBe(200);
        expect(PurgeResponse.parse(await res.json())).toMatchObject({ adapter_versions: 1 });
        expect(await leftovers(s, dataDir, ok)).toEqual({
          datasets: 0,
          checkpoints: 0,
          activations: 0,
          adapters: 0,
        });
        if (backend === 'fs') expect(existsSync(join(dataDir, 'tenants', TENANT))).toBe(false);
        // Another tenant cannot purge the job through its own name.
        const other = await signed(worker.url, '/internal/v1/purge', { tenant: 'tenant-q', job_id: ok });
        expect(other.status).toBe(409);
      } finally {
        await worker.stop();
      }
    }, 240_000);
  });
}
