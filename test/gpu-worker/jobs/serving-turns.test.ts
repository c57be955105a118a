import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GenerateResponse } from '../../../schemas/index.ts';
import { writeTinyCheckpoint } from '../../helpers/tiny-checkpoint.ts';
import { metric, StandInEdge, signed, spawnWorker, type WorkerProcess } from '../server/helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'ladder-turns-'));
let edge: StandInEdge;
let worker: WorkerProcess;

beforeAll(async () => {
  edge = await new StandInEdge().start();
  const lines = Array.from({ length: 48 }, (_, i) =>
    JSON.stringify({ prompt: `item ${i} is`, completion: ` ${i % 2 ? 'odd' : 'even'} number ${i}` }),
  );
  edge.files.set('train.jsonl', `${lines.join('\n')}\n`);
  const backboneDir = (await writeTinyCheckpoint(join(root, 'backbone'), { architecture: 'llama', seed: 5 }))
    .dir;
  worker = await spawnWorker({
    LADDER_BACKBONE_DIR: backboneDir,
    LADDER_CACHE_DIR: join(root, 'build-cache'),
    LADDER_DATA_DIR: join(root, 'data'),
  });
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await edge?.close();
  rmSync(root, { recursive: true, force: true });
});

describe('serving while a job trains on the same worker', () => {
  it('the job gives its compute turn to waiting requests inside its steps, and every request is answered', async () => {
    const id = 'turns-job';
    const start = await signed(worker.url, '/internal/v1/jobs', {
      job_id: id,
      tenant: 'tenant-t',
      training_file_url: `${edge.url}/files/train.jsonl`,
      // Several micro-batches per update, so a step has yield points inside it.
      method: { type: 'lst', hyperparameters: { n_epochs: 100, batch_size: 16, batch_tokens: 64 } },
      seed: 1,
      callback_url: `${edge.url}/events/${id}`,
    });
    expect(start.status, await start.clone().text()).toBe(200);
    for (
      let i = 0;
      i < 1200 && !edge.events(id).some((e) => e.type === 'progress' || e.type === 'metrics');
      i++
    )
      await new Promise((r) => setTimeout(r, 50));
    expect(edge.events(id).map((e) => e.type)).toContain('metrics');

    for (let i = 0; i < 12; i++) {
      const res = await signed(worker.url, '/internal/v1/generate', {
        request_id: `t${i}`,
        tenant: 'tenant-t',
        adapter: null,
        prompt: { text: `item ${i} is` },
        sampling: { max_tokens: 4, temperature: 0 },
      });
      expect(res.status, await res.clone().text()).toBe(200);
      expect(GenerateResponse.parse(await res.json()).usage.completion_tokens).toBeGreaterThan(0);
    }
    expect(edge.events(id).some((e) => ['succeeded', 'failed', 'cancelled'].includes(e.type))).toBe(false);
    // Without yield points a request waits for the training turn between whole steps: no yields.
    expect(await metric(worker.url, 'ladder_training_yields_total')).toBeGreaterThan(0);
    expect((await signed(worker.url, `/internal/v1/jobs/${id}/cancel`, {})).status).toBe(200);
  }, 180_000);
});
