import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGradAccumulation, buildTrainStep, toModelBytes } from '../../../gpu-worker/src/graph/index.ts';
import { f32, i64, type Tensor, TrainRunner } from '../../../gpu-worker/src/runtime/index.ts';
import {
  initSideNet,
  lstPreset,
  resolveSideNet,
  SIDE_IO,
  SIDE_METRICS,
  type SideNetShape,
  sideTrainSpec,
} from '../../../gpu-worker/src/side-net/index.ts';
import { rng } from '../../helpers/gradcheck.ts';
import { writeTinyCheckpoint } from '../../helpers/tiny-checkpoint.ts';

// The side net's real training step on random taps: the update of a step accumulated over
// micro-batches of unequal target counts is the update of one batch holding them all, and its
// gradient is the finite-difference gradient of that batch's mean loss.
//
// AdamW's first update is p' = p - lr g / (|g| + eps) (bias corrections cancel at t = 1, no
// decay, no clipping), so with eps = 1 and lr = 1000 the gradient reads back exactly from it:
// g = delta eps / (lr - |delta|), and delta is large next to p (no cancellation).
const LR = 1000;
const OPTIM = { eps: 1, weightDecay: 0, maxGradNorm: Number.POSITIVE_INFINITY };

let root: string;
let shape: SideNetShape;
let head: Float32Array;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'ladder-accumulation-'));
  const ckpt = await writeTinyCheckpoint(join(root, 'llama'), {
    architecture: 'llama',
    layers: 2,
    hidden: 64,
    seed: 3,
  });
  shape = resolveSideNet(ckpt.config, lstPreset(ckpt.config, { reduction_factor: 4 }));
  const r = rng(5);
  head = Float32Array.from({ length: shape.vocab * shape.d }, () => (r() - 0.5) * 0.2);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Rows {
  B: number;
  T: number;
  feeds: Record<string, Tensor>;
  targets: number;
}

/** B rows of T positions: random taps, and `targets[b]` labelled positions at the end of row b. */
function rows(targets: number[], T: number, seed: number): Rows {
  const r = rng(seed);
  const B = targets.length;
  const feeds: Record<string, Tensor> = {};
  for (const t of [...shape.taps, 'final'] as const) {
    const data = Float32Array.from({ length: B * T * shape.d }, () => r() * 2 - 1);
    feeds[t === 'final' ? SIDE_IO.finalHidden : SIDE_IO.tap(t)] = f32(data, [B, T, shape.d]);
  }
  const labels = new BigInt64Array(B * T).fill(-100n);
  targets.forEach((n, b) => {
    for (let t = T - n; t < T; t++) labels[b * T + t] = BigInt(Math.floor(r() * shape.vocab));
  });
  const positions = BigInt64Array.from({ length: B * T }, (_, i) => BigInt(i % T));
  feeds[SIDE_IO.labels] = i64(labels, [B, T]);
  feeds[SIDE_IO.mask] = i64(new BigInt64Array(B * T).fill(1n), [B, T]);
  feeds[SIDE_IO.positions] = i64(positions, [B, T]);
  feeds[SIDE_IO.lmHead] = f32(head, [shape.vocab, shape.d]);
  return { B, T, feeds, targets: targets.reduce((a, b) => a + b, 0) };
}

/** Rows [from, to) of a batch built by `rows` (every feed but the head is (B, T, ...)). */
function sliceRows(all: Rows, from: number, to: number, targets: number): Rows {
  const feeds: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(all.feeds)) {
    if (name === SIDE_IO.lmHead) {
      feeds[name] = t;
      continue;
    }
    const per = t.data.length / all.B;
    const data = (t.data as Float32Array | BigInt64Array).slice(from * per, to * per);
    const dims = [to - from, ...t.dims.slice(1)];
    feeds[name] = data instanceof Float32Array ? f32(data, dims) : i64(data as BigInt64Array, dims);
  }
  return { B: to - from, T: all.T, feeds, targets };
}

const spec = () => sideTrainSpec(shape, { tapDtype: 'float32', optim: OPTIM });

async function oneStep(batch: Rows, initial: Record<string, Float32Array>) {
  const { graph, layout } = buildTrainStep(spec());
  const runner = await TrainRunner.create({ layout, step: toModelBytes(graph) }, initial);
  const out = await runner.step(batch.feeds, LR);
  const params = runner.params() as Record<string, Float32Array>;
  await runner.dispose();
  return { ...out, params };
}

async function accumulated(parts: Rows[], initial: Record<string, Float32Array>, weighted: boolean) {
  const { grad, apply, layout } = buildGradAccumulation(spec());
  const runner = await TrainRunner.create(
    { layout, grad: toModelBytes(grad), apply: toModelBytes(apply) },
    initial,
  );
  for (const p of parts) await runner.accumulate(p.feeds, weighted ? p.targets : 1);
  await runner.apply(LR);
  const params = runner.params() as Record<string, Float32Array>;
  await runner.dispose();
  return params;
}

/** The gradient AdamW's first update took, read back from the parameters' change. */
function gradientOf(before: Float32Array, after: Float32Array): Float64Array {
  return Float64Array.from(before, (p, i) => {
    const delta = p - after[i]!;
    return (delta * OPTIM.eps) / (LR - Math.abs(delta));
  });
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

describe('gradient accumulation over micro-batches (the side net training step)', () => {
  it('weighted by target tokens, equals one step on the whole batch and finite differences of its mean loss', async () => {
    const initial = initSideNet(shape, 9);
    // Up starts at zero (step 0 is the backbone); give it values so every path has a gradient.
    const r = rng(11);
    initial['up.weight'] = Float32Array.from(initial['up.weight']!, () => (r() - 0.5) * 0.1);
    const targets = [1, 6, 2, 7]; // micro-batches [row 0] and [rows 1-3]: 1 and 15 targets
    const all = rows(targets, 8, 21);
    const parts = [sliceRows(all, 0, 1, 1), sliceRows(all, 1, 4, 15)];

    const whole = await oneStep(all, initial);
    expect(whole.metrics[SIDE_METRICS.correct]).toBeGreaterThanOrEqual(0);
    expect(whole.metrics[SIDE_METRICS.correct]).toBeLessThanOrEqual(all.targets);
    const byTokens = await accumulated(parts, initial, true);
    const byBatches = await accumulated(parts, initial, false);

    for (const name of ['up.weight', 'layers.0.gate', 'layers.1.w_down', 'down.0.weight']) {
      if (!initial[name]) throw new Error(`no param ${name}: ${Object.keys(initial).join(', ')}`);
      const g = gradientOf(initial[name]!, whole.params[name]!);
      const scale = Math.max(...g.map(Math.abs));
      expect(scale).toBeGreaterThan(0);
      expect(maxAbsDiff(gradientOf(initial[name]!, byTokens[name]!), g)).toBeLessThan(1e-3 * scale);
      // Averaging the two micro-batch means weighs row 0's single target like 15: another gradient.
      expect(maxAbsDiff(gradientOf(initial[name]!, byBatches[name]!), g)).toBeGreaterThan(0.05 * scale);
    }

    // Finite differences of the whole batch's mean loss at the largest entries of Up's gradient.
    const g = gradientOf(initial['up.weight']!, whole.params['up.weight']!);
    const largest = [...g.keys()].sort((a, b) => Math.abs(g[b]!) - Math.abs(g[a]!)).slice(0, 3);
    const h = 1e-2;
    for (const i of largest) {
      const at = async (d: number) => {
        const p = { ...initial, 'up.weight': initial['up.weight']!.slice() };
        p['up.weight'][i]! += d;
        return (await oneStep(all, p)).loss;
      };
      const fd = ((await at(h)) - (await at(-h))) / (2 * h);
      expect(Math.abs(fd - g[i]!)).toBeLessThan(0.05 * Math.abs(g[i]!) + 1e-4);
    }
  });
});
