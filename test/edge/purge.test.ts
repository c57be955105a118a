import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { call, eventually, json, newTenant, uploadFile } from './helpers/api.ts';
import { seedAdapter } from './helpers/seed.ts';
import { interceptWorkers, StandInWorker } from './helpers/stand-in-worker.ts';

// The stand-in answers the edge's signed purges (verifying each signature) and records them.
describe("deletes reach the workers' copies", () => {
  let a: StandInWorker;
  let b: StandInWorker;
  beforeEach(async () => {
    a = new StandInWorker('purge-a');
    b = new StandInWorker('purge-b');
    interceptWorkers(a, b);
    expect((await a.heartbeat()).status).toBe(200);
    expect((await b.heartbeat()).status).toBe(200);
  });
  afterEach(() => vi.restoreAllMocks());

  it('DELETE /v1/models/{adapter} purges the adapter and its job on every live worker', async () => {
    const t = await newTenant('purger');
    const model = await seedAdapter(t.id, 'adp-gone');
    await json(await call(`/v1/models/${model}`, { key: t.key, method: 'DELETE' }));
    const expected = { tenant: t.id, job_id: 'ftjob-seed', adapter: { adapter_id: 'adp-gone', version: 1 } };
    expect(a.purges).toEqual([expected]);
    expect(b.purges).toEqual([expected]);
    expect(a.rejectedSignatures).toEqual([]);
    // A second delete is a 404 and purges nothing more.
    expect((await call(`/v1/models/${model}`, { key: t.key, method: 'DELETE' })).status).toBe(404);
    expect(a.purges).toHaveLength(1);
  });

  it('a worker that is down at the delete gets the purge later from the queue', async () => {
    const t = await newTenant('purger-down');
    const model = await seedAdapter(t.id, 'adp-later');
    a.down = true;
    await json(await call(`/v1/models/${model}`, { key: t.key, method: 'DELETE' }));
    expect(b.purges).toHaveLength(1);
    expect(a.purges).toHaveLength(0);
    a.down = false;
    const got = await eventually(async () => a.purges[0], 25_000);
    expect(got).toMatchObject({ tenant: t.id, adapter: { adapter_id: 'adp-later' } });
  }, 40_000);

  it('DELETE /v1/files/{id} purges the cached copies of every job that trained on it, not the adapters', async () => {
    const t = await newTenant('purger-files');
    const file = await uploadFile(t.key);
    const other = await uploadFile(t.key);
    const job = await json<{ id: string }>(
      await call('/v1/fine_tuning/jobs', {
        key: t.key,
        body: { model: 'ladder-tiny', training_file: file.id },
      }),
    );
    await json(
      await call('/v1/fine_tuning/jobs', {
        key: t.key,
        body: { model: 'ladder-tiny', training_file: other.id },
      }),
    );
    await eventually(async () => [...a.jobs, ...b.jobs].find((j) => j.job_id === job.id));
    await json(await call(`/v1/files/${file.id}`, { key: t.key, method: 'DELETE' }));
    for (const w of [a, b]) expect(w.purges).toEqual([{ tenant: t.id, job_id: job.id }]);
  });
});
