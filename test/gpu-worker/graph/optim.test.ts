import { describe, expect, it } from 'vitest';
import {
  ADAMW_DEFAULTS,
  type AdamWOptions,
  adamw,
  after,
  buildGradAccumulation,
  buildTrainStep,
  decaysByDefault,
  Graph,
  GraphError,
  inPlaceProblems,
  matmul,
  mul,
  reduceSum,
  scan,
  toModelBytes,
} from '../../../gpu-worker/src/graph/index.ts';
import { createSession, f32, i64, type Tensor } from '../../../gpu-worker/src/runtime/index.ts';
import { rng } from '../../helpers/gradcheck.ts';

// The graph AdamW (float32) against a plain TypeScript AdamW in float64, written from the
// torch.optim.AdamW and clip_grad_norm_ documentation. Float32 tolerance: |got - want| <=
// 1e-6 + 1e-5 |want| on every element of params, m and v, and on the reported grad norm.
const ATOL = 1e-6;
const RTOL = 1e-5;

type Vec = Record<string, number[]>;

interface RefState {
  p: Vec;
  m: Vec;
  v: Vec;
}

function refAdamW(
  s: RefState,
  grads: Vec,
  t: number,
  lr: number,
  o: AdamWOptions,
): { s: RefState; norm: number } {
  const names = Object.keys(s.p);
  const norm = Math.sqrt(names.reduce((acc, n) => acc + grads[n]!.reduce((a, g) => a + g * g, 0), 0));
  const coef = Math.min(1, o.maxGradNorm / (norm + 1e-6));
  const bc1 = 1 - o.beta1 ** t;
  const bc2 = 1 - o.beta2 ** t;
  const out: RefState = { p: {}, m: {}, v: {} };
  for (const n of names) {
    const wd = o.decay(n) ? o.weightDecay : 0;
    out.m[n] = s.m[n]!.map((m, i) => o.beta1 * m + (1 - o.beta1) * grads[n]![i]! * coef);
    out.v[n] = s.v[n]!.map((v, i) => o.beta2 * v + (1 - o.beta2) * (grads[n]![i]! * coef) ** 2);
    out.p[n] = s.p[n]!.map((p, i) => {
      const denom = Math.sqrt(out.v[n]![i]!) / Math.sqrt(bc2) + o.eps;
      return p * (1 - lr * wd) - (lr / bc1) * (out.m[n]![i]! / denom);
    });
  }
  return { s: out, norm };
}

function expectClose(got: ArrayLike<number>, want: readonly number[], what: string): number {
  expect(got.length, `${what}: length`).toBe(want.length);
  let maxErr = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    maxErr = Math.max(maxErr, err);
    if (err > ATOL + RTOL * Math.abs(want[i]!))
      expect.fail(`${what}[${i}]: graph ${got[i]} vs reference ${want[i]}`);
  }
  return maxErr;
}

const SHAPES: Record<string, number[]> = { 'fc.weight': [3, 4], 'fc.bias': [4] };

/** A graph that is only the optimizer: gradients come in as inputs, so the test controls them. */
async function optimizerSession(opts: Partial<AdamWOptions>, stepDtype: 'int64' | 'float32' = 'int64') {
  const g = new Graph({ name: 'adamw_only' });
  const slots = Object.entries(SHAPES).map(([name, shape]) => ({
    name,
    param: g.input(name, 'float32', shape),
    grad: g.input(`g_${name}`, 'float32', shape),
    m: g.input(`m_${name}`, 'float32', shape),
    v: g.input(`v_${name}`, 'float32', shape),
  }));
  const { updates, gradNorm } = adamw(
    slots,
    g.input('step', stepDtype, []),
    g.input('lr', 'float32', []),
    opts,
  );
  for (const u of updates) {
    g.output(u.param, `${u.name}.next`);
    g.output(u.m, `m_${u.name}.next`);
    g.output(u.v, `v_${u.name}.next`);
  }
  g.output(gradNorm, 'grad_norm');
  return createSession(toModelBytes(g));
}

const random = (rand: () => number, n: number, scale: number) =>
  Array.from({ length: n }, () => Math.fround((rand() * 2 - 1) * scale));

/** Run `steps` updates through the graph and the reference side by side; returns the max error. */
async function compare(opts: Partial<AdamWOptions>, steps: number, gradScale: number, lr = 0.01) {
  const o = { ...ADAMW_DEFAULTS, ...opts } satisfies AdamWOptions;
  const session = await optimizerSession(opts);
  const rand = rng(7);
  const size = (n: string) => SHAPES[n]!.reduce((a, b) => a * b, 1);
  const names = Object.keys(SHAPES);
  let ref: RefState = { p: {}, m: {}, v: {} };
  const state: Record<string, Tensor> = {};
  for (const n of names) {
    ref.p[n] = random(rand, size(n), 1);
    ref.m[n] = new Array(size(n)).fill(0);
    ref.v[n] = new Array(size(n)).fill(0);
    state[n] = f32(ref.p[n]!, SHAPES[n]!);
    state[`m_${n}`] = f32(ref.m[n]!, SHAPES[n]!);
    state[`v_${n}`] = f32(ref.v[n]!, SHAPES[n]!);
  }
  let maxErr = 0;
  const norms: number[] = [];
  for (let t = 1; t <= steps; t++) {
    const grads = Object.fromEntries(names.map((n) => [n, random(rand, size(n), gradScale)]));
    const feeds: Record<string, Tensor> = { ...state, step: i64([t], []), lr: f32([lr], []) };
    for (const n of names) feeds[`g_${n}`] = f32(grads[n]!, SHAPES[n]!);
    const out = await session.run(feeds);
    const next = refAdamW(ref, grads, t, lr, o);
    ref = next.s;
    norms.push(next.norm);
    maxErr = Math.max(
      maxErr,
      expectClose(out.grad_norm!.data as Float32Array, [next.norm], `step ${t} grad_norm`),
    );
    for (const n of names) {
      for (const [key, want] of [
        [n, ref.p[n]!],
        [`m_${n}`, ref.m[n]!],
        [`v_${n}`, ref.v[n]!],
      ] as const) {
        const got = out[`${key}.next`]!;
        maxErr = Math.max(maxErr, expectClose(got.data as Float32Array, want, `step ${t} ${key}`));
        state[key] = got; // the output tensor is the next input, as the runner does
      }
    }
  }
  await session.dispose();
  if (process.env.SHOW_ERR) console.log('maxErr', maxErr);
  return { maxErr, norms };
}

describe('AdamW as graph ops matches a plain TypeScript AdamW (float32, atol 1e-6 + rtol 1e-5)', () => {
  it('one step with the default options (decay on fc.weight, none on fc.bias)', async () => {
    const { norms } = await compare({ weightDecay: 0.1 }, 1, 0.1, 0.05);
    expect(norms[0]).toBeLessThan(ADAMW_DEFAULTS.maxGradNorm); // clipping inactive here
  });

  it('several steps with global-norm clipping active', async () => {
    const { norms } = await compare({ maxGradNorm: 0.5, weightDecay: 0.1 }, 6, 2);
    for (const n of norms) expect(n, 'pre-clip norm above the limit').toBeGreaterThan(0.5);
  });

  it('several steps with decay on every parameter and clipping off', async () => {
    await compare({ maxGradNorm: Number.POSITIVE_INFINITY, weightDecay: 0.2, decay: () => true }, 5, 3, 0.1);
  });

  it('tiny gradients, where eps decides the step size', async () => {
    await compare({}, 3, 1e-7, 0.01);
  });

  it('takes the step as int64 or float32 alike', async () => {
    const a = await optimizerSession({});
    const b = await optimizerSession({}, 'float32');
    const rand = rng(3);
    const feeds: Record<string, Tensor> = { lr: f32([0.01], []) };
    for (const [n, shape] of Object.entries(SHAPES)) {
      const size = shape.reduce((x, y) => x * y, 1);
      for (const k of [n, `g_${n}`, `m_${n}`]) feeds[k] = f32(random(rand, size, 1), shape);
      feeds[`v_${n}`] = f32(random(rand, size, 1).map(Math.abs), shape);
    }
    const outA = await a.run({ ...feeds, step: i64([5], []) });
    const outB = await b.run({ ...feeds, step: f32([5], []) });
    expect(Array.from(outA['fc.weight.next']!.data as Float32Array)).toEqual(
      Array.from(outB['fc.weight.next']!.data as Float32Array),
    );
    await Promise.all([a.dispose(), b.dispose()]);
  });
});

describe('AdamW options', () => {
  it('spares norms, gates and biases from weight decay by default', () => {
    for (const n of [
      'fc.bias',
      'layers.0.input_layernorm.weight',
      'ln_f.weight',
      'norm1',
      'side.gate',
      'layers.3.gate',
      'b2',
    ])
      expect(decaysByDefault(n), n).toBe(false);
    for (const n of [
      'fc.weight',
      'layers.0.mlp.gate_proj.weight',
      'layers.0.w_gate',
      'w1',
      'embed_tokens.weight',
      'lm_head',
    ])
      expect(decaysByDefault(n), n).toBe(true);
  });

  it('reports every bad option at once', () => {
    const g = new Graph();
    const p = g.input('w', 'float32', [2]);
    const slot = { name: 'w', param: p, grad: p, m: p, v: p };
    expect(() =>
      adamw([slot], g.input('step', 'int64', []), g.input('lr', 'float32', []), { beta1: 1, eps: 0 }),
    ).toThrow(/beta1 1 is not in \(0, 1\); eps 0 is not > 0/);
  });
});

describe('train-step model layout', () => {
  const loss = (
    _g: Graph,
    p: Record<string, ReturnType<Graph['input']>>,
    b: Record<string, ReturnType<Graph['input']>>,
  ) => reduceSum(mul(p.w!, b.x!), undefined, { keepdims: false });

  it('names inputs and outputs so that outputs map back to inputs', () => {
    const spec = {
      params: [{ name: 'w', shape: [3] }],
      batch: [{ name: 'x', dtype: 'float32' as const, shape: [3] }],
      loss,
    };
    const { graph, layout } = buildTrainStep(spec);
    expect(graph.inputs.map((v) => v.name)).toEqual(['w', 'm_w', 'v_w', 'step', 'lr', 'x']);
    expect(graph.outputs.map((v) => v.name)).toEqual(['w.next', 'm_w.next', 'v_w.next', 'loss', 'grad_norm']);
    for (const o of graph.outputs.slice(0, 3))
      expect(graph.inputs.map((v) => layout.next[v.name])).toContain(o.name);
    const { grad, apply } = buildGradAccumulation(spec);
    expect(grad.inputs.map((v) => v.name)).toEqual(['w', 'acc_w', 'loss_weight', 'x']);
    expect(grad.outputs.map((v) => v.name)).toEqual(['acc_w.next', 'loss']);
    expect(apply.inputs.map((v) => v.name)).toEqual([
      'w',
      'm_w',
      'v_w',
      'acc_w',
      'step',
      'lr',
      'micro_batches',
    ]);
    expect(apply.outputs.map((v) => v.name)).toEqual(['w.next', 'm_w.next', 'v_w.next', 'grad_norm']);
  });

  it('reports every name clash and bad shape at once', () => {
    const spec = {
      params: [
        { name: 'w', shape: [3] },
        { name: 'm_w', shape: ['n' as unknown as number] },
      ],
      batch: [{ name: 'lr', dtype: 'float32' as const, shape: [3] }],
      loss,
    };
    expect(() => buildTrainStep(spec)).toThrow(GraphError);
    expect(() => buildTrainStep(spec)).toThrow(
      /param m_w: shape \[n\].*name 'm_w' is used twice.*name 'lr' is used twice/,
    );
  });
});

describe('writing the next state in place (layout.inPlace)', () => {
  // h = x W1, y = h W2: the backward reads W2 for dh (which only W1's gradient needs).
  const twoLayers = (maxGradNorm: number) => ({
    params: [
      { name: 'w1', shape: [3, 4] },
      { name: 'w2', shape: [4, 2] },
    ],
    batch: [{ name: 'x', dtype: 'float32' as const, shape: ['batch', 3] }],
    loss: (
      _g: Graph,
      p: Record<string, ReturnType<Graph['input']>>,
      b: Record<string, ReturnType<Graph['input']>>,
    ) => reduceSum(matmul(matmul(b.x!, p.w1!), p.w2!), undefined, { keepdims: false }),
    optim: { maxGradNorm },
  });

  it('holds for a built step, clipped or not: every update waits for the loss and every gradient', () => {
    // Without the wait, the forward y = h W2 (which only the loss needs: the gradient of a sum
    // does not read y) and, unclipped, the backward's dh = dy W2^T could read W2 after its update.
    for (const maxGradNorm of [1, Number.POSITIVE_INFINITY]) {
      const { graph, layout } = buildTrainStep(twoLayers(maxGradNorm));
      expect(inPlaceProblems(graph, layout.next), `maxGradNorm ${maxGradNorm}`).toEqual([]);
      expect(layout.inPlace).toBe(true);
      expect(buildGradAccumulation(twoLayers(maxGradNorm)).layout.inPlace).toBe(true);
    }
  });

  it('names a read that need not come before the write', () => {
    const build = (waits: boolean) => {
      const g = new Graph();
      const w = g.input('w', 'float32', [2, 2]);
      const x = g.input('x', 'float32', [3, 2]);
      const y = g.output(matmul(x, w), 'y'); // reads w; the update below does not need it
      const next = mul(waits ? after(w, [y]) : w, g.scalar(0.5), 'Update');
      g.output(next, 'w.next');
      return inPlaceProblems(g, { w: 'w.next' });
    };
    expect(build(false)).toEqual([
      "'w' is read by /MatMul, which need not run before /Update writes its next value",
    ]);
    expect(build(true)).toEqual([]);
  });

  it('counts what a Scan body reads from the enclosing graph by name', () => {
    const build = (bodyReadsW: boolean) => {
      const g = new Graph();
      const w = g.input('w', 'float32', [2]);
      const xs = g.input('xs', 'float32', [3, 2]);
      const body = new Graph();
      const slice = body.input('slice', 'float32', [2]);
      body.output(bodyReadsW ? mul(slice, body.outer(w)) : mul(slice, slice), 'out');
      const [ys] = scan(g, { body, states: [], scans: [xs], outShapes: [[3, 2]] });
      g.output(ys!, 'ys');
      g.output(mul(w, g.scalar(0.5)), 'w.next');
      return inPlaceProblems(g, { w: 'w.next' });
    };
    expect(build(false)).toEqual([]);
    expect(build(true)).toEqual([expect.stringMatching(/^'w' is read by \/Scan, which need not run before/)]);
  });
});
