import { describe, expect, it } from 'vitest';
import {
  applyRotary,
  cast,
  causalSelfAttention,
  cos,
  crossEntropy,
  dropout,
  Graph,
  GraphError,
  gatherElements,
  gelu,
  grad,
  halfInputLinear,
  layerNorm,
  linear,
  rmsNorm,
  rotaryTables,
  silu,
  sin,
  swiglu,
  toModelBytes,
  type Value,
} from '../../../gpu-worker/src/graph/index.ts';
import { createSession, f32, f64, i64, type Tensor } from '../../../gpu-worker/src/runtime/index.ts';
import { gradcheck, rng } from '../../helpers/gradcheck.ts';

// Forward checks compare against plain-TypeScript references written here from the papers / HF
// code, never against the engine's own output; gradients are checked by finite differences.

async function run(g: Graph, feeds: Record<string, Tensor>): Promise<Record<string, Float32Array>> {
  const session = await createSession(toModelBytes(g));
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, t.data as Float32Array]));
  } finally {
    await session.dispose();
  }
}

function randoms(n: number, seed: number, spread = 1): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => (r() * 2 - 1) * spread);
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!) / Math.max(1, Math.abs(want[i]!));
    if (!(err <= tol)) expect.fail(`${what}[${i}]: got ${got[i]}, want ${want[i]} (err ${err})`);
  }
}

// ---- plain references ------------------------------------------------------------------------

/** y (rows, out) = x (rows, in) w (in, out) + b */
function refLinear(x: number[], w: number[], inDim: number, outDim: number, b?: number[]): number[] {
  const rows = x.length / inDim;
  const y = new Array<number>(rows * outDim).fill(0);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < outDim; o++) {
      let s = b ? b[o]! : 0;
      for (let i = 0; i < inDim; i++) s += x[r * inDim + i]! * w[i * outDim + o]!;
      y[r * outDim + o] = s;
    }
  return y;
}

function refRmsNorm(x: number[], w: number[], eps: number): number[] {
  const c = w.length;
  return x.map((v, i) => {
    const row = x.slice(i - (i % c), i - (i % c) + c);
    const ms = row.reduce((s, u) => s + u * u, 0) / c;
    return (v / Math.sqrt(ms + eps)) * w[i % c]!;
  });
}

function refLayerNorm(x: number[], w: number[], b: number[], eps: number): number[] {
  const c = w.length;
  return x.map((v, i) => {
    const row = x.slice(i - (i % c), i - (i % c) + c);
    const mean = row.reduce((s, u) => s + u, 0) / c;
    const variance = row.reduce((s, u) => s + (u - mean) ** 2, 0) / c;
    return ((v - mean) / Math.sqrt(variance + eps)) * w[i % c]! + b[i % c]!;
  });
}

/** HF Llama: x * cat(cos, cos) + rotate_half(x) * cat(sin, sin), rotate_half(x) = cat(-x2, x1). */
function refRope(vec: number[], pos: number, theta: number): number[] {
  const d = vec.length;
  const half = d / 2;
  const invFreq = Array.from({ length: half }, (_, i) => 1 / theta ** ((2 * i) / d));
  const emb = [...invFreq, ...invFreq].map((f) => pos * f);
  const rotated = [...vec.slice(half).map((v) => -v), ...vec.slice(0, half)];
  return vec.map((v, i) => v * Math.cos(emb[i]!) + rotated[i]! * Math.sin(emb[i]!));
}

interface AttnCase {
  B: number;
  T: number;
  D: number;
  H: number;
  Hkv: number;
  Dh: number;
  theta: number;
  x: number[];
  wq: number[];
  wk: number[];
  wv: number[];
  wo: number[];
  bq: number[];
  bk: number[];
  bv: number[];
  positions: number[];
  mask: number[];
}

/** Reference GQA attention; rows of padded queries are left NaN (they are not compared). */
function refAttention(c: AttnCase): number[] {
  const { B, T, D, H, Hkv, Dh } = c;
  const q = refLinear(c.x, c.wq, D, H * Dh, c.bq);
  const k = refLinear(c.x, c.wk, D, Hkv * Dh, c.bk);
  const v = refLinear(c.x, c.wv, D, Hkv * Dh, c.bv);
  const head = (m: number[], heads: number, b: number, t: number, h: number) =>
    m.slice(((b * T + t) * heads + h) * Dh, ((b * T + t) * heads + h + 1) * Dh);
  const ctx = new Array<number>(B * T * H * Dh).fill(Number.NaN);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / (H / Hkv)); // HF repeat_kv
      for (let i = 0; i < T; i++) {
        if (c.mask[b * T + i] === 0) continue;
        const qi = refRope(head(q, H, b, i, h), c.positions[b * T + i]!, c.theta);
        const keys = [...Array(T).keys()].filter((j) => j <= i && c.mask[b * T + j] === 1);
        const scores = keys.map((j) => {
          const kj = refRope(head(k, Hkv, b, j, kvh), c.positions[b * T + j]!, c.theta);
          return qi.reduce((s, u, d) => s + u * kj[d]!, 0) / Math.sqrt(Dh);
        });
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const z = e.reduce((s, u) => s + u, 0);
        for (let d = 0; d < Dh; d++) {
          ctx[((b * T + i) * H + h) * Dh + d] = keys.reduce(
            (s, j, n) => s + (e[n]! / z) * head(v, Hkv, b, j, kvh)[d]!,
            0,
          );
        }
      }
    }
  return refLinear(ctx, c.wo, H * Dh, D);
}

function refCrossEntropy(logits: number[], labels: number[], V: number, ignore: number): number {
  let total = 0;
  let kept = 0;
  labels.forEach((label, n) => {
    if (label === ignore) return;
    const row = logits.slice(n * V, (n + 1) * V);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, u) => s + Math.exp(u - max), 0));
    total += lse - row[label]!;
    kept++;
  });
  return kept ? total / kept : 0;
}

/** erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7). */
function refErf(x: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const poly =
    t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  return Math.sign(x) * (1 - poly * Math.exp(-x * x));
}

// ---- gradients ---------------------------------------------------------------------------------

describe('gradients of the nn layers match finite differences', () => {
  it('linear with and without bias (float64)', async () => {
    const x = { name: 'x', shape: [2, 3, 4] };
    const w = { name: 'w', shape: [4, 5] };
    await gradcheck((a, b, c) => linear(a, b, c), [x, w, { name: 'b', shape: [5] }]);
    await gradcheck((a, b) => linear(a, b), [x, w]);
  });

  it('halfInputLinear: a float16 input widened in the product and again in the backward (float64 w, b)', async () => {
    // x in eighths: exact in float16, so the product is the float64 one of the same numbers.
    const x = {
      name: 'x',
      shape: [2, 3, 4],
      data: Array.from({ length: 24 }, (_, i) => ((i * 5) % 17) / 8 - 1),
      diff: false,
    };
    const w = { name: 'w', shape: [4, 5] };
    const half = (a: Value) => cast(a, 'float16');
    await gradcheck((a, b, c) => halfInputLinear(half(a), b, c), [x, w, { name: 'b', shape: [5] }]);
    await gradcheck((a, b) => halfInputLinear(half(a), b), [x, w]);
    // The product itself: as linear over the same (exact) values.
    const g = new Graph({ name: 'half_linear' });
    const xi = g.input('x', 'float32', [2, 3, 4]);
    const wi = g.input('w', 'float32', [4, 5]);
    g.output(halfInputLinear(cast(xi, 'float16'), wi), 'half');
    g.output(linear(xi, wi), 'plain');
    const session = await createSession(toModelBytes(g));
    const out = await session.run({ x: f32(x.data, [2, 3, 4]), w: f32(randoms(20, 9, 1), [4, 5]) });
    await session.dispose();
    expect(Array.from(out.half!.data as Float32Array)).toEqual(Array.from(out.plain!.data as Float32Array));
    const bad = new Graph({ name: 'bad' });
    expect(() =>
      halfInputLinear(bad.input('x', 'float32', [2, 4]), bad.input('w', 'float32', [4, 5])),
    ).toThrow(/halfInputLinear wants x float16/);
  });

  it('silu, swiglu (its hand-written backward) and tanh-GELU (float64)', async () => {
    await gradcheck((x) => silu(x), [{ name: 'x', shape: [2, 5], data: randoms(10, 3, 3) }]);
    await gradcheck(
      (gate, up) => swiglu(gate, up),
      [
        { name: 'gate', shape: [2, 5], data: randoms(10, 6, 4) },
        { name: 'up', shape: [2, 5] },
      ],
    );
    await gradcheck(
      (x) => gelu(x, { approximate: 'tanh' }),
      [{ name: 'x', shape: [2, 5], data: randoms(10, 4, 3) }],
    );
  });

  it('erf-GELU (float32: ORT CPU has no float64 Erf; tol 2e-3 for float32 central differences)', async () => {
    await gradcheck((x) => gelu(x), [{ name: 'x', shape: [2, 5], data: randoms(10, 5, 3) }], {
      dtype: 'float32',
      eps: 1e-2,
      tol: 2e-3,
    });
  });

  it('rmsNorm and layerNorm (float64)', async () => {
    const x = { name: 'x', shape: [2, 3, 4] };
    await gradcheck((a, w) => rmsNorm(a, w, { eps: 1e-5 }), [x, { name: 'w', shape: [4] }]);
    await gradcheck(
      (a, w, b) => layerNorm(a, w, b, { eps: 1e-5 }),
      [x, { name: 'w', shape: [4] }, { name: 'b', shape: [4] }],
    );
  });

  it('rotary embedding with in-graph tables (float64 x, float32 tables)', async () => {
    await gradcheck(
      (x, pos) => {
        const { cos: c, sin: s } = rotaryTables(pos, 6, 10_000);
        return applyRotary(x, c, s);
      },
      [
        { name: 'x', shape: [2, 2, 3, 6] },
        { name: 'pos', shape: [2, 3], data: [0, 1, 2, 5, 6, 7], dtype: 'int64' },
      ],
    );
  });

  it('GQA causal self-attention with a padding mask (float64)', async () => {
    const [B, T, D, H, Hkv, Dh] = [2, 4, 6, 4, 2, 4];
    await gradcheck(
      (x, wq, wk, wv, wo, bq, bk, bv, pos, mask) => {
        const { cos: c, sin: s } = rotaryTables(pos, Dh, 10_000);
        return causalSelfAttention(
          x,
          { wq, wk, wv, wo, bq, bk, bv },
          { heads: H, kvHeads: Hkv, headDim: Dh, cos: c, sin: s, mask },
        );
      },
      [
        { name: 'x', shape: [B, T, D] },
        { name: 'wq', shape: [D, H * Dh] },
        { name: 'wk', shape: [D, Hkv * Dh] },
        { name: 'wv', shape: [D, Hkv * Dh] },
        { name: 'wo', shape: [H * Dh, D] },
        { name: 'bq', shape: [H * Dh] },
        { name: 'bk', shape: [Hkv * Dh] },
        { name: 'bv', shape: [Hkv * Dh] },
        { name: 'pos', shape: [B, T], data: [0, 1, 2, 3, 0, 0, 1, 2], dtype: 'int64' },
        { name: 'mask', shape: [B, T], data: [1, 1, 1, 1, 0, 1, 1, 1], diff: false },
      ],
    );
  });

  it('cross-entropy with some ignored labels, and with all of them ignored (float64)', async () => {
    await gradcheck(
      (logits, labels) => crossEntropy(logits, labels),
      [
        { name: 'logits', shape: [5, 4], data: randoms(20, 6, 3) },
        { name: 'labels', shape: [5], data: [1, -100, 3, 0, -100], dtype: 'int64' },
      ],
    );
    await gradcheck(
      (logits, labels) => crossEntropy(logits, labels, { ignoreIndex: 7 }),
      [
        { name: 'logits', shape: [3, 4] },
        { name: 'labels', shape: [3], data: [7, 7, 7], dtype: 'int64' },
      ],
    );
  });

  it('dropout: the gradient is the same scaled mask (float64)', async () => {
    await gradcheck(
      (x, seed) => dropout(x, 0.4, seed),
      [
        { name: 'x', shape: [3, 5] },
        { name: 'seed', shape: [], data: [11], dtype: 'int64' },
      ],
    );
  });

  it('new primitives: gatherElements (repeated indices accumulate), sin, cos (float64)', async () => {
    await gradcheck(
      (x, idx) => gatherElements(x, idx, 1),
      [
        { name: 'x', shape: [2, 4] },
        { name: 'idx', shape: [2, 3], data: [0, 3, 0, 2, 2, 1], dtype: 'int64' },
      ],
    );
    await gradcheck((x) => sin(x), [{ name: 'x', shape: [4], data: randoms(4, 8, 3) }]);
    await gradcheck((x) => cos(x), [{ name: 'x', shape: [4], data: randoms(4, 9, 3) }]);
  });
});

// ---- forward against plain references ----------------------------------------------------------

describe('nn layers match plain-TypeScript references (float32, default ORT optimisations)', () => {
  it('GQA attention over symbolic batch and seq, with left padding', async () => {
    const [D, H, Hkv, Dh, theta] = [8, 4, 2, 4, 500];
    const g = new Graph();
    const x = g.input('x', 'float32', ['batch', 'seq', D]);
    const pos = g.input('pos', 'int64', ['batch', 'seq']);
    const mask = g.input('mask', 'float32', ['batch', 'seq']);
    const names = ['wq', 'wk', 'wv', 'wo', 'bq', 'bk', 'bv'] as const;
    const shapes: Record<(typeof names)[number], number[]> = {
      wq: [D, H * Dh],
      wk: [D, Hkv * Dh],
      wv: [D, Hkv * Dh],
      wo: [H * Dh, D],
      bq: [H * Dh],
      bk: [Hkv * Dh],
      bv: [Hkv * Dh],
    };
    const p = Object.fromEntries(names.map((n) => [n, g.input(n, 'float32', shapes[n])])) as Record<
      (typeof names)[number],
      Value
    >;
    const tables = g.scope('rotary_emb', () => rotaryTables(pos, Dh, theta));
    const y = g.scope('layers.0', () =>
      causalSelfAttention(x, p, { heads: H, kvHeads: Hkv, headDim: Dh, ...tables, mask }),
    );
    expect(y.shape).toEqual(['batch', 'seq', D]);
    g.output(y, 'y');
    expect(g.nodes.some((n) => n.name === '/layers.0/attn/q_proj/MatMul')).toBe(true);

    const session = await createSession(toModelBytes(g));
    for (const [B, T] of [
      [2, 5],
      [1, 3],
    ] as const) {
      const weights = Object.fromEntries(
        names.map((n, i) => [
          n,
          randoms(
            shapes[n].reduce((a, b) => a * b, 1),
            100 + i,
            0.7,
          ),
        ]),
      ) as Record<(typeof names)[number], number[]>;
      // batch row 0 unpadded; row 1 left-padded by two, with HF positions cumsum(mask) - 1
      const maskData = Array.from({ length: B * T }, (_, i) => (i >= T && i % T < 2 ? 0 : 1));
      const positions = maskData.map((_, i) => Math.max(0, (i % T) - (i >= T ? 2 : 0)));
      const c: AttnCase = {
        ...{ B, T, D, H, Hkv, Dh, theta },
        ...weights,
        x: randoms(B * T * D, 7),
        positions,
        mask: maskData,
      };
      const feeds: Record<string, Tensor> = {
        x: f32(c.x, [B, T, D]),
        pos: i64(positions, [B, T]),
        mask: f32(maskData, [B, T]),
      };
      for (const n of names) feeds[n] = f32(weights[n], shapes[n]);
      const got = (await session.run(feeds)).y!.data as Float32Array;
      const want = refAttention(c);
      expect(got.every(Number.isFinite), 'every row is finite, padded ones too').toBe(true);
      const real = [...want.keys()].filter((i) => maskData[Math.floor(i / D)] === 1);
      expectClose(
        real.map((i) => got[i]!),
        real.map((i) => want[i]!),
        2e-5,
        `attention B=${B} T=${T}`,
      );
    }
    await session.dispose();
  });

  it('rotary tables and rotation follow HF rotate_half', async () => {
    const [B, H, T, Dh, theta] = [2, 3, 4, 8, 10_000];
    const g = new Graph();
    const x = g.input('x', 'float32', [B, H, T, Dh]);
    const pos = g.input('pos', 'int64', [B, T]);
    const t = rotaryTables(pos, Dh, theta);
    expect(t.cos.shape).toEqual([B, T, Dh / 2]);
    g.output(applyRotary(x, t.cos, t.sin), 'y');
    const xs = randoms(B * H * T * Dh, 12);
    const positions = [0, 1, 2, 3, 10, 200, 3000, 40_000];
    const { y } = await run(g, { x: f32(xs, [B, H, T, Dh]), pos: i64(positions, [B, T]) });
    const want: number[] = [];
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < T; i++) {
          const at = ((b * H + h) * T + i) * Dh;
          want.push(...refRope(xs.slice(at, at + Dh), positions[b * T + i]!, theta));
        }
    // float32 angles of positions up to 4e4 carry ~4e4 * 6e-8 = 2.4e-3 rad of rounding, as in HF
    expectClose(y!, want, 5e-3, 'rotary');
  });

  it('rmsNorm, layerNorm, silu and both GELUs', async () => {
    const C = 6;
    const g = new Graph();
    const x = g.input('x', 'float32', ['rows', C]);
    const w = g.input('w', 'float32', [C]);
    const b = g.input('b', 'float32', [C]);
    g.output(rmsNorm(x, w, { eps: 1e-6 }), 'rms');
    g.output(layerNorm(x, w, b, { eps: 1e-5 }), 'ln');
    g.output(silu(x), 'silu');
    g.output(gelu(x), 'gelu');
    g.output(gelu(x, { approximate: 'tanh' }), 'gelu_tanh');
    const xs = randoms(3 * C, 21, 3);
    const ws = randoms(C, 22);
    const bs = randoms(C, 23);
    const out = await run(g, { x: f32(xs, [3, C]), w: f32(ws, [C]), b: f32(bs, [C]) });
    expectClose(out.rms!, refRmsNorm(xs, ws, 1e-6), 1e-5, 'rmsNorm');
    expectClose(out.ln!, refLayerNorm(xs, ws, bs, 1e-5), 1e-5, 'layerNorm');
    expectClose(
      out.silu!,
      xs.map((v) => v / (1 + Math.exp(-v))),
      1e-6,
      'silu',
    );
    expectClose(
      out.gelu!,
      xs.map((v) => 0.5 * v * (1 + refErf(v / Math.SQRT2))),
      1e-6,
      'gelu',
    );
    const k = Math.sqrt(2 / Math.PI);
    expectClose(
      out.gelu_tanh!,
      xs.map((v) => 0.5 * v * (1 + Math.tanh(k * (v + 0.044715 * v ** 3)))),
      1e-6,
      'gelu tanh',
    );
  });

  it('erf-GELU also runs in float64 (erf taken in float32)', async () => {
    const g = new Graph();
    g.output(gelu(g.input('x', 'float64', [4])), 'y');
    const xs = [-2, -0.5, 0.3, 1.7];
    const session = await createSession(toModelBytes(g));
    const { y } = await session.run({ x: f64(xs, [4]) });
    await session.dispose();
    expectClose(
      y!.data as Float64Array,
      xs.map((v) => 0.5 * v * (1 + refErf(v / Math.SQRT2))),
      1e-6,
      'gelu f64',
    );
  });

  it('cross-entropy value: mean over kept tokens; 0 and finite gradients when none is kept', async () => {
    const [N, V] = [6, 5];
    const g = new Graph();
    const logits = g.input('logits', 'float32', ['n', V]);
    const labels = g.input('labels', 'int64', ['n']);
    const loss = crossEntropy(logits, labels);
    expect(loss.shape).toEqual([]);
    g.output(loss, 'loss');
    g.output(grad(loss, [logits])[0]!, 'dlogits');
    const session = await createSession(toModelBytes(g));
    const ls = randoms(N * V, 31, 4);
    for (const lab of [
      [4, -100, 0, 2, -100, 1],
      [3, 3, 3, 3, 3, 3],
      [-100, -100, -100, -100, -100, -100],
    ]) {
      const out = await session.run({ logits: f32(ls, [N, V]), labels: i64(lab, [N]) });
      const got = Number(out.loss!.data[0]);
      expect(got).toBeCloseTo(refCrossEntropy(ls, lab, V, -100), 5);
      const d = out.dlogits!.data as Float32Array;
      expect(d.every(Number.isFinite)).toBe(true);
      // softmax - onehot, per kept row, over the kept count: rows sum to 0, ignored rows are 0
      lab.forEach((l, n) => {
        const row = d.slice(n * V, (n + 1) * V);
        if (l === -100) expect(row.every((v) => v === 0)).toBe(true);
        else expect(Math.abs(row.reduce((s, v) => s + v, 0))).toBeLessThan(1e-6);
      });
    }
    await session.dispose();
  });
});

// ---- dropout -----------------------------------------------------------------------------------

describe('dropout', () => {
  async function masks(p: number, seeds: number[], n = 40_000): Promise<Float32Array[]> {
    const g = new Graph();
    const x = g.input('x', 'float32', ['batch', 'n']);
    const seed = g.input('seed', 'int64', []);
    g.output(dropout(x, p, seed), 'y');
    const session = await createSession(toModelBytes(g));
    const ones = new Float32Array(n).fill(1);
    const out: Float32Array[] = [];
    for (const s of seeds) {
      const r = await session.run({ x: f32(ones, [4, n / 4]), seed: i64([s], []) });
      out.push(r.y!.data as Float32Array);
    }
    await session.dispose();
    return out;
  }

  const keptShare = (m: Float32Array) => m.reduce((s, v) => s + (v !== 0 ? 1 : 0), 0) / m.length;
  const disagreement = (a: Float32Array, b: Float32Array, shift = 0) => {
    let d = 0;
    for (let i = 0; i + shift < a.length; i++) if ((a[i]! === 0) !== (b[i + shift]! === 0)) d++;
    return d / (a.length - shift);
  };

  it('keeps about 1 - p of the elements and scales them by 1 / (1 - p)', async () => {
    for (const p of [0.1, 0.25, 0.6]) {
      const [m] = await masks(p, [1234]);
      // 40k Bernoulli draws: sd of the share <= 0.0025, so 0.012 is ~5 sd
      expect(Math.abs(keptShare(m!) - (1 - p))).toBeLessThan(0.012);
      const values = new Set(m!);
      expect([...values].sort()).toEqual([0, Math.fround(1 / (1 - p))].sort());
    }
  });

  it('is deterministic per seed and draws a fresh, unrelated mask for another seed', async () => {
    const p = 0.25;
    const [a, again, b, c, negative] = await masks(p, [7, 7, 8, 2 ** 40 + 7, -5]);
    expect(disagreement(a!, again!)).toBe(0);
    // independent masks disagree on 2 p (1 - p) = 0.375 of the elements
    for (const other of [b!, negative!]) expect(Math.abs(disagreement(a!, other) - 0.375)).toBeLessThan(0.02);
    // neighbouring seeds are not shifted copies of each other
    expect(Math.abs(disagreement(a!, b!, 1) - 0.375)).toBeLessThan(0.02);
    expect(Math.abs(disagreement(b!, a!, 1) - 0.375)).toBeLessThan(0.02);
    // seeds are taken modulo 2^32
    expect(disagreement(a!, c!)).toBe(0);
    for (const m of [b!, negative!]) expect(Math.abs(keptShare(m) - 0.75)).toBeLessThan(0.012);
  });

  it('is the identity for p = 0 and rejects p outside [0, 1)', () => {
    const g = new Graph();
    const x = g.input('x', 'float32', [3]);
    const seed = g.input('seed', 'int64', []);
    expect(dropout(x, 0, seed)).toBe(x);
    expect(() => dropout(x, 1, seed)).toThrow(GraphError);
    expect(() => dropout(x, 0.5, g.input('s', 'float32', []))).toThrow(/int64 scalar/);
  });
});

describe('attention configuration errors', () => {
  it('lists every problem at once, with the node path', () => {
    const g = new Graph();
    const x = g.input('x', 'float32', ['batch', 'seq', 8]);
    const pos = g.input('pos', 'int64', ['batch', 'seq']);
    const t = rotaryTables(pos, 4, 10_000);
    const w = (name: string, shape: number[]) => g.input(name, 'float32', shape);
    const params = { wq: w('wq', [8, 12]), wk: w('wk', [8, 8]), wv: w('wv', [8, 4]), wo: w('wo', [16, 8]) };
    expect(() =>
      g.scope('layers.1', () => causalSelfAttention(x, params, { heads: 4, kvHeads: 3, headDim: 4, ...t })),
    ).toThrow(/\/layers\.1\/attn: .*kvHeads 3 must divide heads 4.*wq .*\[8, 16\].*wv .*\[8, 12\]/);
  });
});
