import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AdapterCache, FsAdapterStore, type Lease } from '../../../adapters/index.ts';
import { generate, SAMPLING_DEFAULTS } from '../../../gpu-worker/src/backbone/generate/index.ts';
import {
  acquireAdapter,
  ComputeGate,
  createAdapterCache,
  type ReadyAdapter,
  Scheduler,
  ServingModel,
  scoreWithAdapters,
  workerMetrics,
} from '../../../gpu-worker/src/serving/index.ts';
import { RowWeights, stackRows, swapRemovePlan } from '../../../gpu-worker/src/serving/row-weights.ts';
import { AdapterStepper } from '../../../gpu-worker/src/side-net/index.ts';
import type { AdapterManifest } from '../../../schemas/index.ts';
import { writeTinyCheckpoint } from '../../helpers/tiny-checkpoint.ts';
import { publishAdapter, refOf } from './helpers.ts';

// In-process: the scheduler and scoring against an independent reference, a pass per adapter
// (AdapterStepper over the shape's single-adapter session) and the plain backbone stepper.

const root = mkdtempSync(join(tmpdir(), 'ladder-stacked-'));
let model: ServingModel;
let cache: AdapterCache<ReadyAdapter>;
let manifests: AdapterManifest[];
const gate = new ComputeGate();

beforeAll(async () => {
  const ckpt = await writeTinyCheckpoint(join(root, 'backbone'), { architecture: 'llama', seed: 3 });
  const dataDir = join(root, 'data');
  manifests = [];
  for (const [i, tenant] of ['tenant-a', 'tenant-b', 'tenant-c'].entries()) {
    manifests.push(
      await publishAdapter({ dataDir, backboneDir: ckpt.dir, tenant, adapterId: `a${i}`, seed: i + 1 }),
    );
  }
  model = await ServingModel.open({ backboneDir: ckpt.dir, cacheDir: join(root, 'cache') });
  const store = new FsAdapterStore({ dataDir, tenant: 'system', backboneFingerprint: model.fingerprint });
  cache = createAdapterCache({ model, store, budgetBytes: 64 << 20 });
}, 120_000);

afterAll(async () => {
  await model?.dispose();
  rmSync(root, { recursive: true, force: true });
});

const lease = (i: number) => acquireAdapter(cache, refOf(manifests[i]!));

/** Greedy tokens of one prompt through a pass per adapter (or the plain backbone). */
async function alone(prompt: number[], adapter: ReadyAdapter | null, maxTokens: number): Promise<number[]> {
  const stepper = adapter
    ? new AdapterStepper(
        model.backbone.stepper,
        adapter.side.step,
        adapter.side.shape,
        adapter.tensors,
        model.lmHead,
      )
    : model.backbone.stepper;
  const [r] = await generate<unknown>(stepper, [{ prompt, params: { maxTokens } }]);
  return r!.tokens;
}

describe('one stacked side pass for a batch mixing adapters', () => {
  it('rows of 3 adapters and plain rows, leaving at different steps, give the tokens of a pass per adapter, with one side pass per step', async () => {
    const metrics = workerMetrics();
    const scheduler = new Scheduler(model, gate, metrics, {
      maxBatch: 8,
      maxBatchTokens: 4096,
      maxQueue: 16,
      maxQueuePerTenant: 16,
      batchWaitMs: 0,
      prefixCacheBytes: 0,
    });
    const rows: { text: string; adapter: number | null; maxTokens: number }[] = [
      { text: 'Hello World, the', adapter: 0, maxTokens: 6 },
      { text: 'the cat is', adapter: null, maxTokens: 3 },
      { text: 'on the mat', adapter: 1, maxTokens: 4 },
      { text: 'Hello', adapter: 2, maxTokens: 2 },
      { text: 'the mat is on', adapter: 0, maxTokens: 5 },
      { text: 'World', adapter: null, maxTokens: 6 },
    ];
    const prompts = rows.map((r) => model.tokenizer.encode(r.text));
    const leases = await Promise.all(rows.map((r) => (r.adapter === null ? null : lease(r.adapter))));
    const want: number[][] = [];
    for (const [i, r] of rows.entries())
      want.push(await alone(prompts[i]!, leases[i]?.value ?? null, r.maxTokens));
    // The adapters really change what is generated.
    expect(await alone(prompts[0]!, null, 6)).not.toEqual(want[0]);
    expect(await alone(prompts[0]!, leases[2]!.value, 6)).not.toEqual(want[0]);

    const before = { ...model.counters };
    const outs = await Promise.all(
      rows.map((r, i) =>
        scheduler.submit({
          requestId: `r${i}`,
          tenant: `t${i}`,
          prompt: prompts[i]!,
          params: { ...SAMPLING_DEFAULTS, maxTokens: r.maxTokens },
          seed: 0,
          adapter: leases[i] ?? null,
        }),
      ),
    );
    await scheduler.close();
    expect(outs.map((o) => o.tokens)).toEqual(want);
    const decodeSteps = model.counters.decodeSteps - before.decodeSteps;
    expect(model.counters.prefillRuns - before.prefillRuns).toBe(1);
    expect(decodeSteps).toBe(5);
    // One side pass for the prefill, one per decode step: not one per adapter.
    expect(model.counters.sidePasses - before.sidePasses).toBe(1 + decodeSteps);
    // Weight rows copied: 4 for the prefill, 4 when the batch forms; when the adapter-2 row
    // leaves, the last row moves into its slot (1); when the adapter-1 row leaves, both rows
    // left run adapter 0 and take its own session (0). Nothing per step.
    expect(model.counters.adapterRowCopies - before.adapterRowCopies).toBe(4 + 4 + 1);
  });

  it('scores K adapters with one backbone pass and one stacked side pass, as a pass per adapter does', async () => {
    const which = [null, 0, 1, null, 2];
    const leases: (Lease<ReadyAdapter> | null)[] = await Promise.all(
      which.map((i) => (i === null ? null : lease(i))),
    );
    const req = {
      request_id: 'score',
      tenant: 'tenant-a',
      prompt: { text: 'Hello World, the cat is' },
      completion: ' on the mat',
      adapters: which.map((i) => (i === null ? null : refOf(manifests[i]!))),
    };
    const before = { ...model.counters };
    const got = await scoreWithAdapters(model, gate, req, leases);
    expect(model.counters.scoreRuns - before.scoreRuns).toBe(1);
    expect(model.counters.sidePasses - before.sidePasses).toBe(1);

    // Reference: each completion token's log-softmax from a full pass over its prefix.
    const prompt = model.tokenizer.encode(req.prompt.text);
    const completion = model.tokenizer.encode(req.completion, { addSpecialTokens: false });
    const ids = [...prompt, ...completion];
    for (const [i, l] of leases.entries()) {
      const a = l?.value;
      const stepper = a
        ? new AdapterStepper(model.backbone.stepper, a.side.step, a.side.shape, a.tensors, model.lmHead)
        : model.backbone.stepper;
      let want = 0;
      for (let t = prompt.length; t < ids.length; t++) {
        const prefix = ids.slice(0, t);
        const out = await stepper.step({
          ids: [prefix],
          mask: [prefix.map(() => 1)],
          positions: [prefix.map((_, p) => p)],
        });
        const row = Array.from(out.lastLogits[0]!);
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
        want += row[ids[t]!]! - lse;
      }
      expect(Math.abs(got.scores[i]!.logprob - want), `score ${i}`).toBeLessThanOrEqual(
        1e-5 * Math.abs(want),
      );
    }
    expect(got.scores[0]!.logprob).toBe(got.scores[3]!.logprob);
    expect(new Set(got.scores.map((s) => s.logprob)).size).toBe(4);
    for (const l of leases) l?.release();
  });
});

describe('stacked row weights', () => {
  it('a membership change moves the last rows into the holes and appends newcomers, equal to stacking afresh', async () => {
    const adapters = await Promise.all([0, 1, 2].map((i) => lease(i)));
    const [a, b, c] = adapters.map((l) => l.value);
    const shape = a!.side.shape;
    const before = [a!, b!, c!, a!, b!];
    const weights = new RowWeights(shape, before);
    const plan = swapRemovePlan([0, 1, 2, 3, 4], (i) => i !== 2 && i !== 4, [5]);
    expect(plan).toEqual({ order: [0, 1, 3, 5], kept: 3, moves: [{ from: 3, to: 2 }] });
    weights.apply(plan, [c!]);
    const want = stackRows(shape, [a!, b!, a!, c!]);
    for (const [name, t] of Object.entries(weights.tensors)) {
      expect(t.dims, name).toEqual(want[name]!.dims);
      expect(Array.from(t.data as Float32Array), name).toEqual(Array.from(want[name]!.data as Float32Array));
    }
    expect(swapRemovePlan(['x', 'y', 'z'], (r) => r === 'x', [])).toEqual({
      order: ['x'],
      kept: 1,
      moves: [],
    });
    expect(swapRemovePlan(['x', 'y', 'z'], (r) => r === 'z', ['w'])).toEqual({
      order: ['z', 'w'],
      kept: 1,
      moves: [{ from: 2, to: 0 }],
    });
    for (const l of adapters) l.release();
  });
});
