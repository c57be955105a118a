// 4/8-bit blockwise quantization: quantizeLinear params/s, and 1x2048 @ 2048x2048 fp32 MatMul vs MatMulNBits (accuracy_level 0 and 4) with level 4's error.
import { performance } from 'node:perf_hooks';
import { addQuantizedWeights, quantizedLinear, quantizeLinear } from '../gpu-worker/src/backbone/index.ts';
import type { QuantizedLinear } from '../gpu-worker/src/backbone/types.ts';
import { Graph, matmul, toModelBytes } from '../gpu-worker/src/graph/index.ts';
import { createSession, f32, type Session } from '../gpu-worker/src/runtime/index.ts';
import { Rng } from '../gpu-worker/src/util/rng.ts';
import { median } from './stats.ts';

const D = 2048;

/** Best-of-reps quantize time for an (N, K) weight, as params/s. */
function quantizeRate(w: Float32Array, opts: Parameters<typeof quantizeLinear>[3], reps = 5): number {
  quantizeLinear(w, D, D, opts); // warm the JIT
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    quantizeLinear(w, D, D, opts);
    best = Math.min(best, performance.now() - t0);
  }
  return w.length / (best / 1000);
}

/** (N, K) row-major -> (K, N): the fp32 MatMul operand for y = x W^T. */
function transposed(w: Float32Array, n: number, k: number): Float32Array {
  const out = new Float32Array(n * k);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) out[j * n + i] = w[i * k + j]!;
  return out;
}

async function fp32Session(w: Float32Array): Promise<Session> {
  const g = new Graph();
  const x = g.input('x', 'float32', ['m', D]);
  g.output(matmul(x, g.initializer('w', 'float32', [D, D], transposed(w, D, D))), 'y');
  return createSession(toModelBytes(g));
}

async function nbitsSession(q: QuantizedLinear, accuracyLevel: 0 | 4): Promise<Session> {
  const g = new Graph();
  const x = g.input('x', 'float32', ['m', D]);
  g.output(quantizedLinear(x, q, addQuantizedWeights(g, 'w', q), { accuracyLevel }), 'y');
  return createSession(toModelBytes(g));
}

/** Median ms of one run on a (1, D) input. */
async function timeRun(s: Session, x: Float32Array, reps = 400): Promise<number> {
  const feeds = { x: f32(x, [1, D]) };
  for (let r = 0; r < 50; r++) await s.run(feeds);
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await s.run(feeds);
    times.push(performance.now() - t0);
  }
  return median(times);
}

async function outputs(s: Session, x: Float32Array, m: number): Promise<Float32Array> {
  return (await s.run({ x: f32(x, [m, D]) })).y!.data as Float32Array;
}

/** ||a - b|| / ||b||, max|a - b| / max|b|, and how often the row argmax agrees. */
function compare(a: Float32Array, b: Float32Array, m: number) {
  let d = 0;
  let n = 0;
  let maxD = 0;
  let maxB = 0;
  let agree = 0;
  for (let r = 0; r < m; r++) {
    let ia = 0;
    let ib = 0;
    for (let c = 0; c < D; c++) {
      const i = r * D + c;
      d += (a[i]! - b[i]!) ** 2;
      n += b[i]! ** 2;
      maxD = Math.max(maxD, Math.abs(a[i]! - b[i]!));
      maxB = Math.max(maxB, Math.abs(b[i]!));
      if (a[i]! > a[r * D + ia]!) ia = c;
      if (b[i]! > b[r * D + ib]!) ib = c;
    }
    if (ia === ib) agree++;
  }
  return { rel: Math.sqrt(d / n), maxRel: maxD / maxB, top1: agree / m };
}

const rng = new Rng(1);
const w = Float32Array.from({ length: D * D }, () => 0.02 * rng.normal());
const q4 = quantizeLinear(w, D, D, { bits: 4, blockSize: 32 });
const rates = {
  q4_bs32: quantizeRate(w, { bits: 4, blockSize: 32 }),
  q4_bs128: quantizeRate(w, { bits: 4, blockSize: 128 }),
  q8_bs32: quantizeRate(w, { bits: 8, blockSize: 32 }),
};

const x1 = Float32Array.from({ length: D }, () => rng.normal());
const fp32 = await fp32Session(w);
const level0 = await nbitsSession(q4, 0);
const level4 = await nbitsSession(q4, 4);
const ms = { fp32: 0, level0: 0, level4: 0 };
for (let round = 0; round < 2; round++) {
  // interleaved rounds, best median of each, so a noisy neighbour does not favour one kernel
  const t = [await timeRun(fp32, x1), await timeRun(level0, x1), await timeRun(level4, x1)];
  ms.fp32 = round ? Math.min(ms.fp32, t[0]!) : t[0]!;
  ms.level0 = round ? Math.min(ms.level0, t[1]!) : t[1]!;
  ms.level4 = round ? Math.min(ms.level4, t[2]!) : t[2]!;
}

// logits-style error: 64 hidden-state-like rows through a 2048-wide head
const M = 64;
const xs = Float32Array.from({ length: M * D }, () => rng.normal());
const [yf, y0, y4] = [await outputs(fp32, xs, M), await outputs(level0, xs, M), await outputs(level4, xs, M)];
const l4VsL0 = compare(y4, y0, M);
const l0VsFp32 = compare(y0, yf, M);
for (const s of [fp32, level0, level4]) await s.dispose();

const e = (v: number) => Number(v.toExponential(3));
console.log(
  `quantize params/s: 4-bit bs32 ${(rates.q4_bs32 / 1e6).toFixed(0)}M, 4-bit bs128 ${(rates.q4_bs128 / 1e6).toFixed(0)}M, ` +
    `8-bit bs32 ${(rates.q8_bs32 / 1e6).toFixed(0)}M; 4-bit relError ${q4.relError.toFixed(4)}`,
);
console.log(
  `1x${D} @ ${D}x${D}: fp32 ${ms.fp32.toFixed(3)} ms, MatMulNBits 4-bit level 0 ${ms.level0.toFixed(3)} ms, ` +
    `level 4 ${ms.level4.toFixed(3)} ms`,
);
console.log(
  `level 4 vs 0: rel ${e(l4VsL0.rel)}, max ${e(l4VsL0.maxRel)}, top-1 ${l4VsL0.top1}; ` +
    `4-bit level 0 vs fp32 weights: rel ${e(l0VsFp32.rel)}, top-1 ${l0VsFp32.top1}`,
);
console.log(
  JSON.stringify({
    bench: 'quant',
    quantize_params_per_s_4bit_bs32: Math.round(rates.q4_bs32),
    quantize_params_per_s_4bit_bs128: Math.round(rates.q4_bs128),
    quantize_params_per_s_8bit_bs32: Math.round(rates.q8_bs32),
    rel_error_4bit_bs32: e(q4.relError),
    matmul_fp32_ms: e(ms.fp32),
    matmul_nbits4_level0_ms: e(ms.level0),
    matmul_nbits4_level4_ms: e(ms.level4),
    level4_vs_level0_rel: e(l4VsL0.rel),
    level4_vs_level0_max_rel: e(l4VsL0.maxRel),
    level4_vs_level0_top1: l4VsL0.top1,
    nbits4_vs_fp32_rel: e(l0VsFp32.rel),
    nbits4_vs_fp32_top1: l0VsFp32.top1,
  }),
);
