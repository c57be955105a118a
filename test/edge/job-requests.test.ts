// Every request shape POST /v1/fine_tuning/jobs accepts (OpenAI's, its v6 client's, Ladder's own)
// and every one it refuses, through the edge in the Workers runtime, up to what the worker is sent.
import type { StartJobRequest } from '@ladder/schemas';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { type ApiErrorBody, call, eventually, json, newTenant, uploadFile } from './helpers/api.ts';
import { interceptWorkers, StandInWorker } from './helpers/stand-in-worker.ts';

type Job = {
  id: string;
  status: string;
  hyperparameters: Record<string, unknown>;
  method: Record<string, unknown>;
};

const AUTO = { n_epochs: 'auto', batch_size: 'auto', learning_rate_multiplier: 'auto' };

let tenant: { key: string };
let fileId: string;
let worker: StandInWorker;

beforeAll(async () => {
  tenant = await newTenant('shapes', { concurrent_jobs: 1000, max_adapters: 1000 });
  fileId = (await uploadFile(tenant.key)).id;
});
beforeEach(async () => {
  worker = new StandInWorker('stand-in-shapes');
  interceptWorkers(worker);
  await worker.heartbeat();
});
afterEach(() => vi.restoreAllMocks());

const create = (body: Record<string, unknown>) =>
  call('/v1/fine_tuning/jobs', {
    key: tenant.key,
    body: { model: 'ladder-tiny', training_file: fileId, ...body },
  });

/** The job as created, and the StartJobRequest its worker got. */
async function accepted(body: Record<string, unknown>): Promise<{ job: Job; start: StartJobRequest }> {
  const job = await json<Job>(await create(body));
  const start = await eventually(async () => worker.jobs.find((j) => j.job_id === job.id));
  return { job, start };
}

async function refused(body: Record<string, unknown>) {
  return (await json<ApiErrorBody>(await create(body), 400)).error;
}

describe('POST /v1/fine_tuning/jobs: accepted shapes', () => {
  it('no method at all: supervised (LST) with every hyperparameter auto', async () => {
    const { job, start } = await accepted({});
    expect(job.hyperparameters).toEqual(AUTO);
    expect(job.method).toEqual({
      type: 'supervised',
      supervised: { hyperparameters: expect.objectContaining(AUTO) },
    });
    expect(start.method.type).toBe('lst');
    expect(start.method.hyperparameters).toMatchObject(AUTO);
  });

  it("method: {type: 'supervised'}, alone and with supervised.hyperparameters all 'auto'", async () => {
    for (const method of [
      { type: 'supervised' },
      { type: 'supervised', supervised: {} },
      { type: 'supervised', supervised: { hyperparameters: AUTO } },
    ]) {
      const { job, start } = await accepted({ method });
      expect(job.hyperparameters).toEqual(AUTO);
      expect(job.method.type).toBe('supervised');
      expect(start.method).toMatchObject({ type: 'lst', hyperparameters: AUTO });
    }
  });

  it('supervised with numbers, and Ladder knobs beside them', async () => {
    const { job, start } = await accepted({
      method: {
        type: 'supervised',
        supervised: {
          hyperparameters: {
            n_epochs: 5,
            batch_size: 8,
            learning_rate_multiplier: 2,
            batch_tokens: 512,
            reduction_factor: 4,
            init: 'pruned',
          },
        },
      },
    });
    expect(job.hyperparameters).toEqual({ n_epochs: 5, batch_size: 8, learning_rate_multiplier: 2 });
    expect(start.method).toMatchObject({
      type: 'lst',
      hyperparameters: {
        n_epochs: 5,
        batch_size: 8,
        learning_rate_multiplier: 2,
        batch_tokens: 512,
        reduction_factor: 4,
        init: 'pruned',
      },
    });
  });

  it("method: {type: 'lst' | 'xladder', lst | xladder: {hyperparameters}}", async () => {
    const lst = await accepted({ method: { type: 'lst', lst: { hyperparameters: { n_epochs: 3 } } } });
    expect(lst.job.method).toMatchObject({ type: 'lst', lst: { hyperparameters: { n_epochs: 3 } } });
    expect(lst.start.method).toMatchObject({
      type: 'lst',
      hyperparameters: { n_epochs: 3, batch_size: 'auto' },
    });
    const x = await accepted({
      method: { type: 'xladder', xladder: { hyperparameters: { xladder_depth: 2, learning_rate: 0.01 } } },
    });
    expect(x.job.method).toMatchObject({
      type: 'xladder',
      xladder: { hyperparameters: { xladder_depth: 2 } },
    });
    expect(x.start.method).toMatchObject({
      type: 'xladder',
      hyperparameters: { xladder_depth: 2, learning_rate: 0.01, n_epochs: 'auto' },
    });
  });

  it('method: {type, hyperparameters} (the first Ladder shape)', async () => {
    const { job, start } = await accepted({
      method: { type: 'xladder', hyperparameters: { n_epochs: 60, learning_rate: 0.01 } },
    });
    expect(job.method).toMatchObject({ type: 'xladder', xladder: { hyperparameters: { n_epochs: 60 } } });
    expect(start.method).toMatchObject({
      type: 'xladder',
      hyperparameters: { n_epochs: 60, learning_rate: 0.01 },
    });
  });

  it('the deprecated top-level hyperparameters, alone or beside a method that agrees', async () => {
    const alone = await accepted({ hyperparameters: { n_epochs: 4, batch_size: 'auto' } });
    expect(alone.job.hyperparameters).toEqual({ ...AUTO, n_epochs: 4 });
    expect(alone.job.method.type).toBe('supervised');
    const both = await accepted({
      hyperparameters: { n_epochs: 4 },
      method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 4, batch_size: 2 } } },
    });
    expect(both.start.method.hyperparameters).toMatchObject({ n_epochs: 4, batch_size: 2 });
  });

  it("what OpenAI's client may send as empty: integrations [] or null, null optional fields", async () => {
    for (const body of [
      { integrations: [] },
      { integrations: null, validation_file: null, suffix: null, seed: null, metadata: null },
    ]) {
      const { job } = await accepted(body);
      expect(job.status).toBe('validating_files');
    }
  });
});

describe('POST /v1/fine_tuning/jobs: refused shapes, each a 400 naming the field', () => {
  it('dpo and reinforcement', async () => {
    for (const type of ['dpo', 'reinforcement']) {
      expect(await refused({ method: { type, [type]: { hyperparameters: { n_epochs: 1 } } } })).toMatchObject(
        {
          type: 'invalid_request_error',
          param: 'method.type',
          code: 'unsupported_method',
        },
      );
    }
  });

  it('a method.type that is not one', async () => {
    const e = await refused({ method: { type: 'lora' } });
    expect(e.param).toBe('method.type');
    expect(e.message).toContain('supervised');
  });

  it('a sub-object that disagrees with method.type', async () => {
    for (const [method, param] of [
      [{ type: 'supervised', lst: { hyperparameters: { n_epochs: 2 } } }, 'method.lst'],
      [{ type: 'lst', supervised: {} }, 'method.supervised'],
      [{ type: 'xladder', lst: {}, xladder: {} }, 'method.lst'],
      [{ type: 'supervised', dpo: { hyperparameters: {} } }, 'method.dpo'],
    ] as const) {
      const e = await refused({ method });
      expect(e, JSON.stringify(method)).toMatchObject({ param, code: 'method_mismatch' });
      expect(e.message).toContain(`method.type is '${method.type}'`);
    }
  });

  it('a hyperparameter given twice with different values', async () => {
    const top = await refused({
      hyperparameters: { n_epochs: 3 },
      method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 4 } } },
    });
    expect(top).toMatchObject({
      param: 'method.supervised.hyperparameters.n_epochs',
      code: 'conflicting_hyperparameters',
    });
    expect(top.message).toContain('hyperparameters.n_epochs is 3');
    const auto = await refused({
      method: {
        type: 'lst',
        hyperparameters: { batch_size: 'auto' },
        lst: { hyperparameters: { batch_size: 8 } },
      },
    });
    expect(auto.param).toBe('method.lst.hyperparameters.batch_size');
  });

  it('integrations', async () => {
    expect(await refused({ integrations: [{ type: 'wandb', wandb: { project: 'p' } }] })).toMatchObject({
      param: 'integrations',
      code: 'unsupported_parameter',
    });
  });

  it("values out of range, of the wrong type, or not 'auto'", async () => {
    for (const [hyperparameters, name] of [
      [{ n_epochs: 0 }, 'n_epochs'],
      [{ n_epochs: 2.5 }, 'n_epochs'],
      [{ batch_size: 257 }, 'batch_size'],
      [{ batch_size: 'big' }, 'batch_size'],
      [{ learning_rate_multiplier: -1 }, 'learning_rate_multiplier'],
      [{ learning_rate_multiplier: 'AUTO' }, 'learning_rate_multiplier'],
      [{ beta: 0.1 }, 'beta'],
    ] as const) {
      const e = await refused({ method: { type: 'supervised', supervised: { hyperparameters } } });
      expect(e.param, JSON.stringify(hyperparameters)).toBe(`method.supervised.hyperparameters.${name}`);
      expect(e.type).toBe('invalid_request_error');
    }
    expect((await refused({ hyperparameters: { n_epochs: 'many' } })).param).toBe('hyperparameters.n_epochs');
  });

  it('fields OpenAI does not have, and a method without a type', async () => {
    expect((await refused({ epochs: 3 })).param).toBe('epochs');
    expect((await refused({ method: { supervised: {} } })).param).toBe('method.type');
    expect((await refused({ method: { type: 'lst', lst: { epochs: 3 } } })).param).toBe('method.lst.epochs');
  });
});
