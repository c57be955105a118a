import { describe, expect, it } from 'vitest';
import {
  add,
  buildGradAccumulation,
  buildTrainStep,
  type Graph,
  gather,
  matmul,
  mul,
  reduceMean,
  sub,
  type TrainStepSpec,
  tanh,
  toModelBytes,
  type Value,
} from '../../../gpu-worker/src/graph/index.ts';
import { collectGarbage, f32, i64, type Tensor, TrainRunner } from '../../../gpu-worker/src/runtime/index.ts';
import { rng } from '../../helpers/gradcheck.ts';

// ---------------------------------------------------------------------------------------------
// Models built from primitives, with their gradients written out by hand for the reference.

type Params = Record<string, Value>;

/** Linear regression: loss = mean((x W + b - y)^2) over the batch and both outputs. */
const linear = (opts: TrainStepSpec['optim'] = {}): TrainStepSpec => ({
  params: [
    { name: 'fc.weight', shape: [3, 2] },
    { name: 'fc.bias', shape: [2] },
  ],
  batch: [
    { name: 'x', dtype: 'float32', shape: ['batch', 3] },
    { name: 'y', dtype: 'float32', shape: ['batch', 2] },
  ],
  loss: (_g: Graph, p: Params, b: Params) => {
    const r = sub(add(matmul(b.x!, p['fc.weight']!), p['fc.bias']!), b.y!); // (B, 2)
    return reduceMean(mul(r, r), undefined, { keepdims: false });
  },
  optim: opts,
});

const HIDDEN = 16;

/** A 2 -> 16 -> 1 tanh MLP regressor. */
const mlp: TrainStepSpec = {
  params: [
    { name: 'l1.weight', shape: [2, HIDDEN] },
    { name: 'l1.bias', shape: [HIDDEN] },
    { name: 'l2.weight', shape: [HIDDEN, 1] },
    { name: 'l2.bias', shape: [1] },
  ],
  batch: [
    { name: 'x', dtype: 'float32', shape: ['batch', 2] },
    { name: 'y', dtype: 'float32', shape: ['batch', 1] },
  ],
  loss: (_g, p, b) => {
    const h = tanh(add(matmul(b.x!, p['l1.weight']!), p['l1.bias']!)); // (B, H)
    const r = sub(add(matmul(h, p['l2.weight']!), p['l2.bias']!), b.y!); // (B, 1)
    return reduceMean(mul(r, r), undefined, { keepdims: false });
  },
};

function initParams(spec: TrainStepSpec, seed: number): Record<string, Float32Array> {
  const rand = rng(seed);
  return Object.fromEntries(
    spec.params.map((p) => {
      const size = p.shape.reduce((a, b) => a * b, 1);
      const bound = 1 / Math.sqrt(p.shape[0]!);
      return [p.name, Float32Array.from({ length: size }, () => (rand() * 2 - 1) * bound)];
    }),
  );
}

function regressionBatch(rand: () => number, n: number) {
  const x = Float32Array.from({ length: n * 3 }, () => rand() * 2 - 1);
  const y = Float32Array.from({ length: n * 2 }, () => rand() * 2 - 1);
  return { x, y, feeds: { x: f32(x, [n, 3]), y: f32(y, [n, 2]) } };
}

// ---------------------------------------------------------------------------------------------
// The reference: plain TypeScript in float64, from the torch AdamW / clip_grad_norm_ docs.

const O = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };

function linearLossAndGrads(p: Record<string, number[]>, x: Float32Array, y: Float32Array) {
  const n = y.length / 2;
  const w = p['fc.weight']!;
  const b = p['fc.bias']!;
  const dw: number[] = new Array(6).fill(0);
  const db = [0, 0];
  let loss = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < 2; j++) {
      let pred = b[j]!;
      for (let k = 0; k < 3; k++) pred += x[i * 3 + k]! * w[k * 2 + j]!;
      const r = pred - y[i * 2 + j]!;
      loss += (r * r) / (n * 2);
      const d = (2 * r) / (n * 2);
      db[j]! += d;
      for (let k = 0; k < 3; k++) dw[k * 2 + j]! += x[i * 3 + k]! * d;
    }
  }
  return { loss, grads: { 'fc.weight': dw, 'fc.bias': db } as Record<string, number[]> };
}

function refStep(
  s: { p: Record<string, number[]>; m: Record<string, number[]>; v: Record<string, number[]> },
  grads: Record<string, number[]>,
  t: number,
  lr: number,
  o: { weightDecay: number; maxGradNorm: number; decays: (n: string) => boolean },
) {
  const names = Object.keys(s.p);
  const norm = Math.sqrt(names.reduce((a, n) => a + grads[n]!.reduce((c, g) => c + g * g, 0), 0));
  const coef = Math.min(1, o.maxGradNorm / (norm + 1e-6));
  for (const n of names) {
    const wd = o.decays(n) ? o.weightDecay : 0;
    s.m[n] = s.m[n]!.map((m, i) => O.beta1 * m + (1 - O.beta1) * grads[n]![i]! * coef);
    s.v[n] = s.v[n]!.map((v, i) => O.beta2 * v + (1 - O.beta2) * (grads[n]![i]! * coef) ** 2);
    s.p[n] = s.p[n]!.map((p, i) => {
      const mHat = s.m[n]![i]! / (1 - O.beta1 ** t);
      const vHat = s.v[n]![i]! / (1 - O.beta2 ** t);
      return p * (1 - lr * wd) - (lr * mHat) / (Math.sqrt(vHat) + O.eps);
    });
  }
  return norm;
}

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
};

// ---------------------------------------------------------------------------------------------

describe('TrainRunner with the one-model step', () => {
  it('follows a plain TypeScript AdamW step by step (clipping active, bias not decayed; float32: 2e-6)', async () => {
    const optim = { weightDecay: 0.1, maxGradNorm: 0.3 };
    const { graph, layout } = buildTrainStep(linear(optim));
    const init = initParams(linear(), 11);
    const runner = await TrainRunner.create({ layout, step: toModelBytes(graph) }, init);
    const ref: { p: Record<string, number[]>; m: Record<string, number[]>; v: Record<string, number[]> } = {
      p: Object.fromEntries(Object.entries(init).map(([k, v]) => [k, Array.from(v)])),
      m: { 'fc.weight': new Array(6).fill(0), 'fc.bias': [0, 0] },
      v: { 'fc.weight': new Array(6).fill(0), 'fc.bias': [0, 0] },
    };
    const rand = rng(5);
    const lrs = [0.05, 0.05, 0.02, 0.1, 0.05, 0.03];
    for (const [k, lr] of lrs.entries()) {
      const { x, y, feeds } = regressionBatch(rand, 6);
      const { loss, grads } = linearLossAndGrads(ref.p, x, y);
      const got = await runner.step(feeds, lr);
      const norm = refStep(ref, grads, k + 1, lr, { ...optim, decays: (n) => n === 'fc.weight' });
      expect(norm, 'clipping is active').toBeGreaterThan(optim.maxGradNorm);
      expect(Math.abs(got.loss - loss), `step ${k + 1} loss`).toBeLessThan(2e-6 * Math.max(1, loss));
      expect(Math.abs(got.gradNorm - norm), `step ${k + 1} grad norm`).toBeLessThan(2e-6 * Math.max(1, norm));
      const state = runner.optimizerState();
      for (const n of ['fc.weight', 'fc.bias']) {
        expect(maxDiff(state[n]!, ref.p[n]!), `step ${k + 1} ${n}`).toBeLessThan(2e-6);
        expect(maxDiff(state[`m_${n}`]!, ref.m[n]!), `step ${k + 1} m_${n}`).toBeLessThan(2e-6);
        expect(maxDiff(state[`v_${n}`]!, ref.v[n]!), `step ${k + 1} v_${n}`).toBeLessThan(2e-6);
      }
    }
    expect(runner.stepCount).toBe(lrs.length);
    await runner.dispose();
  });

  it('gives the same loss sequence, bit for bit, in two fresh runners', async () => {
    const { graph, layout } = buildTrainStep(mlp);
    const bytes = toModelBytes(graph);
    const run = async () => {
      const runner = await TrainRunner.create({ layout, step: bytes }, initParams(mlp, 3));
      const data = mlpData(rng(9), 32);
      const losses: number[] = [];
      for (let i = 0; i < 25; i++) losses.push((await runner.step(data, 0.01)).loss);
      const params = runner.params();
      await runner.dispose();
      return { losses, params };
    };
    const a = await run();
    const b = await run();
    expect(new Set(a.losses).size, 'the loss moves').toBeGreaterThan(20);
    expect(a.losses).toEqual(b.losses);
    for (const n of Object.keys(a.params)) expect(a.params[n], n).toEqual(b.params[n]);
  });

  it('trains a small MLP regressor (loss falls by more than 100x in 300 steps)', async () => {
    const { graph, layout } = buildTrainStep(mlp);
    const runner = await TrainRunner.create({ layout, step: toModelBytes(graph) }, initParams(mlp, 1));
    const data = mlpData(rng(2), 64);
    const first = (await runner.step(data, 0.02)).loss;
    let last = first;
    for (let i = 1; i < 300; i++) last = (await runner.step(data, 0.02)).loss;
    expect(last, `loss ${first} -> ${last}`).toBeLessThan(first / 100);
    await runner.dispose();
  });
});

describe('TrainRunner writing the next state in place', () => {
  it('updates the state tensors themselves, bit for bit as a runner that adopts its outputs', async () => {
    const { graph, layout } = buildTrainStep(mlp);
    expect(layout.inPlace).toBe(true);
    const bytes = toModelBytes(graph);
    const inPlace = await TrainRunner.create({ layout, step: bytes }, initParams(mlp, 4));
    const adopting = await TrainRunner.create(
      { layout: { ...layout, inPlace: false }, step: bytes },
      initParams(mlp, 4),
    );
    const held = inPlace.paramTensors()['l1.weight']!;
    const before = Float32Array.from(held.data as Float32Array);
    const adoptedBefore = adopting.paramTensors()['l1.weight']!;
    const data = mlpData(rng(6), 16);
    for (let i = 0; i < 10; i++) {
      const a = await inPlace.step(data, 0.01);
      const b = await adopting.step(data, 0.01);
      expect(a, `step ${i + 1}`).toEqual(b);
    }
    expect(inPlace.optimizerState()).toEqual(adopting.optimizerState());
    expect(inPlace.paramTensors()['l1.weight'], 'the same tensor').toBe(held);
    expect(Array.from(held.data as Float32Array), 'written in place').toEqual(
      Array.from(inPlace.params()['l1.weight']!),
    );
    expect(maxDiff(held.data as Float32Array, Array.from(before)), 'moved').toBeGreaterThan(1e-3);
    expect(adopting.paramTensors()['l1.weight'], 'replaced by the outputs').not.toBe(adoptedBefore);
    await Promise.all([inPlace.dispose(), adopting.dispose()]);
  });

  it('refuses to go on after a run that failed inside onnxruntime (the state may be half written)', async () => {
    // loss = sum(E[ids]^2): an id past the table's end fails in onnxruntime's Gather, past the feed check
    const spec: TrainStepSpec = {
      params: [{ name: 'emb', shape: [4, 2] }],
      batch: [{ name: 'ids', dtype: 'int64', shape: ['batch'] }],
      loss: (_g, p, b) => {
        const rows = gather(p.emb!, b.ids!);
        return reduceMean(mul(rows, rows), undefined, { keepdims: false });
      },
    };
    const { graph, layout } = buildTrainStep(spec);
    expect(layout.inPlace).toBe(true);
    const runner = await TrainRunner.create({ layout, step: toModelBytes(graph) }, initParams(spec, 1));
    const ids = (xs: number[]) => ({ ids: i64(xs, [xs.length]) });
    await runner.step(ids([0, 3]), 0.1);
    await expect(runner.step({ ids: f32([0], [1]) }, 0.1), 'a feed error runs nothing').rejects.toThrow(
      /dtype/,
    );
    await runner.step(ids([1]), 0.1);
    await expect(runner.step(ids([9]), 0.1)).rejects.toThrow(/out of (data )?bounds|invalid|out of range/i);
    await expect(runner.step(ids([0]), 0.1)).rejects.toThrow(
      /may have written part of the state in place.*start a new runner from the last checkpoint/,
    );
    await runner.dispose();
  });
});

/** y = sin(2 x1) + 0.5 x2^2 on x in [-1, 1)^2. */
function mlpData(rand: () => number, n: number): Record<string, Tensor> {
  const x = Float32Array.from({ length: n * 2 }, () => rand() * 2 - 1);
  const y = Float32Array.from({ length: n }, (_, i) => Math.sin(2 * x[2 * i]!) + 0.5 * x[2 * i + 1]! ** 2);
  return { x: f32(x, [n, 2]), y: f32(y, [n, 1]) };
}

describe('TrainRunner with gradient accumulation', () => {
  it('two micro-batches of 4 equal one step on the 8 rows together (float32: 1e-6)', async () => {
    const spec = linear({ weightDecay: 0.1, maxGradNorm: 0.5 });
    const init = initParams(spec, 21);
    const { graph, layout } = buildTrainStep(spec);
    const whole = await TrainRunner.create({ layout, step: toModelBytes(graph) }, init);
    const acc = buildGradAccumulation(spec);
    const micro = await TrainRunner.create(
      { layout: acc.layout, grad: toModelBytes(acc.grad), apply: toModelBytes(acc.apply) },
      init,
    );
    const rand = rng(8);
    for (let step = 1; step <= 4; step++) {
      const { x, y, feeds } = regressionBatch(rand, 8);
      const full = await whole.step(feeds, 0.05);
      const l1 = await micro.accumulate({ x: f32(x.slice(0, 12), [4, 3]), y: f32(y.slice(0, 8), [4, 2]) });
      const l2 = await micro.accumulate({ x: f32(x.slice(12), [4, 3]), y: f32(y.slice(8), [4, 2]) });
      const applied = await micro.apply(0.05);
      expect(applied.microBatches).toBe(2);
      expect(Math.abs((l1.loss + l2.loss) / 2 - full.loss), `step ${step} loss`).toBeLessThan(1e-6);
      expect(Math.abs(applied.gradNorm - full.gradNorm), `step ${step} grad norm`).toBeLessThan(1e-6);
      const a = whole.optimizerState();
      const b = micro.optimizerState();
      for (const n of Object.keys(a)) expect(maxDiff(a[n]!, b[n]!), `step ${step} ${n}`).toBeLessThan(1e-6);
    }
    expect(micro.stepCount).toBe(4);
    await Promise.all([whole.dispose(), micro.dispose()]);
  });

  it('refuses to apply with nothing accumulated', async () => {
    const acc = buildGradAccumulation(linear());
    const runner = await TrainRunner.create(
      { layout: acc.layout, grad: toModelBytes(acc.grad), apply: toModelBytes(acc.apply) },
      initParams(linear(), 1),
    );
    await expect(runner.apply(0.1)).rejects.toThrow(/no micro-batches accumulated/);
    await expect(runner.step({}, 0.1)).rejects.toThrow(/no model for it/);
    await runner.dispose();
  });
});

describe('TrainRunner.create', () => {
  it('reports every problem with the initial state at once', async () => {
    const { graph, layout } = buildTrainStep(linear());
    await expect(
      TrainRunner.create(
        { layout, step: toModelBytes(graph) },
        { 'fc.weight': new Float32Array(5), extra: new Float32Array(1) },
      ),
    ).rejects.toThrow(
      /unknown state 'extra'.*'fc.weight' has 5 values, shape \[3, 2\] needs 6.*missing param 'fc.bias'/,
    );
  });

  it('resumes from saved moments and step count', async () => {
    const spec = linear();
    const { graph, layout } = buildTrainStep(spec);
    const bytes = toModelBytes(graph);
    const rand = rng(4);
    const batches = [0, 1, 2, 3].map(() => regressionBatch(rand, 5).feeds);
    const straight = await TrainRunner.create({ layout, step: bytes }, initParams(spec, 2));
    for (const b of batches) await straight.step(b, 0.05);
    const first = await TrainRunner.create({ layout, step: bytes }, initParams(spec, 2));
    for (const b of batches.slice(0, 2)) await first.step(b, 0.05);
    const resumed = await TrainRunner.create({ layout, step: bytes }, first.optimizerState(), {
      startStep: 2,
    });
    for (const b of batches.slice(2)) await resumed.step(b, 0.05);
    expect(resumed.params()).toEqual(straight.params());
    await Promise.all([straight.dispose(), first.dispose(), resumed.dispose()]);
  });
});

describe('collectGarbage', () => {
  it('frees dropped output buffers at once', async () => {
    const before = process.memoryUsage().arrayBuffers;
    let dropped: Float32Array | undefined = new Float32Array(16 * 2 ** 20); // 64 MB
    dropped[0] = 1;
    expect(process.memoryUsage().arrayBuffers - before).toBeGreaterThanOrEqual(64 * 2 ** 20);
    dropped = undefined;
    await collectGarbage();
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * 2 ** 20);
  });
});
