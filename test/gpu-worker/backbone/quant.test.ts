import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import {
  addQuantizedWeights,
  dequantizeLinear,
  type QuantizedLinear,
  quantizedEmbedding,
  quantizedLinear,
  quantizeLinear,
} from '../../../gpu-worker/src/backbone/index.ts';
import {
  Graph,
  grad,
  matmul,
  matmulNBits,
  mul,
  reduceSum,
  toModelBytes,
  type Value,
} from '../../../gpu-worker/src/graph/index.ts';
import { dequantizeNBits } from '../../../gpu-worker/src/graph/ops/quantized.ts';
import { createSession, f32, i64 } from '../../../gpu-worker/src/runtime/index.ts';
import { Rng } from '../../../gpu-worker/src/util/rng.ts';
import { gradcheck } from '../../helpers/gradcheck.ts';

// The reference here is written from the MatMulNBits layout description alone (no code shared
// with the quantizer): unpack codes and zero points nibble by nibble, dequantize in float64.

type Bits = 4 | 8;
type BlockSize = 32 | 64 | 128;

/** Codes (N, kBlocks * bs), one per element, padding included. */
function unpackCodes(q: QuantizedLinear): Uint8Array {
  const kBlocks = Math.ceil(q.K / q.blockSize);
  const width = kBlocks * q.blockSize;
  const codes = new Uint8Array(q.N * width);
  expect(q.packed.length).toBe((q.N * width * q.bits) / 8);
  for (let i = 0; i < codes.length; i++) {
    codes[i] = q.bits === 8 ? q.packed[i]! : i % 2 === 0 ? q.packed[i >> 1]! & 0x0f : q.packed[i >> 1]! >> 4;
  }
  return codes;
}

/** Zero points (N, kBlocks). */
function unpackZeroPoints(q: QuantizedLinear): Uint8Array {
  const kBlocks = Math.ceil(q.K / q.blockSize);
  const cols = Math.ceil((kBlocks * q.bits) / 8);
  expect(q.zeroPoints.length).toBe(q.N * cols);
  const zp = new Uint8Array(q.N * kBlocks);
  for (let n = 0; n < q.N; n++) {
    for (let b = 0; b < kBlocks; b++) {
      const byte = q.zeroPoints[n * cols + Math.floor((b * q.bits) / 8)]!;
      zp[n * kBlocks + b] = q.bits === 8 ? byte : b % 2 === 0 ? byte & 0x0f : byte >> 4;
    }
  }
  return zp;
}

function repack(codes: Uint8Array, zp: Uint8Array, N: number, kBlocks: number, bits: Bits) {
  if (bits === 8) return { packed: Uint8Array.from(codes), zeroPoints: Uint8Array.from(zp) };
  const packed = new Uint8Array(codes.length / 2);
  for (let i = 0; i < packed.length; i++) packed[i] = codes[2 * i]! + 16 * codes[2 * i + 1]!;
  const cols = Math.ceil(kBlocks / 2);
  const zeroPoints = new Uint8Array(N * cols);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < kBlocks; b++)
      zeroPoints[n * cols + (b >> 1)]! += zp[n * kBlocks + b]! * (b % 2 ? 16 : 1);
  }
  return { packed, zeroPoints };
}

/** float64 (N, K): (code - zero point) * scale. */
function referenceDequant(q: QuantizedLinear): Float64Array {
  const codes = unpackCodes(q);
  const zp = unpackZeroPoints(q);
  const kBlocks = Math.ceil(q.K / q.blockSize);
  const width = kBlocks * q.blockSize;
  const w = new Float64Array(q.N * q.K);
  for (let n = 0; n < q.N; n++) {
    for (let k = 0; k < q.K; k++) {
      const b = Math.floor(k / q.blockSize);
      w[n * q.K + k] = (codes[n * width + k]! - zp[n * kBlocks + b]!) * q.scales[n * kBlocks + b]!;
    }
  }
  return w;
}

/** Gaussian weights with the awkward cases: an all-zero row, an all-positive row, an outlier. */
function weights(rng: Rng, N: number, K: number): Float32Array {
  const w = Float32Array.from({ length: N * K }, () => 0.05 * rng.normal());
  w.fill(0, 0, K);
  if (N > 1) for (let k = 0; k < K; k++) w[K + k] = Math.abs(w[K + k]!) + 0.01;
  if (N > 2) w[2 * K + 3] = 2.5;
  return w;
}

/** x (M, K) @ W^T in float64, W (N, K). */
function matmulT(x: Float32Array, w: Float64Array, M: number, N: number, K: number): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[m * K + k]! * w[n * K + k]!;
      y[m * N + n] = acc;
    }
  }
  return y;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

const LAYOUTS: { bits: Bits; blockSize: BlockSize }[] = [4, 8].flatMap((bits) =>
  [32, 64, 128].map((blockSize) => ({ bits: bits as Bits, blockSize: blockSize as BlockSize })),
);

describe('quantizeLinear: MatMulNBits layout', () => {
  it.each(LAYOUTS.flatMap((l) => [false, true].map((symmetric) => ({ ...l, symmetric }))))(
    'bits $bits, block $blockSize, symmetric $symmetric: repack exact, dequantize = (q - z) * s, |error| <= s/2',
    ({ bits, blockSize, symmetric }) => {
      const N = 5;
      const K = 200; // not a multiple of any block size
      const w = weights(new Rng(bits * 1000 + blockSize + (symmetric ? 1 : 0)), N, K);
      const q = quantizeLinear(w, N, K, { bits, blockSize, symmetric });
      const kBlocks = Math.ceil(K / blockSize);
      expect([q.bits, q.blockSize, q.N, q.K]).toEqual([bits, blockSize, N, K]);
      expect(q.scales.length).toBe(N * kBlocks);

      const codes = unpackCodes(q);
      const zp = unpackZeroPoints(q);
      const again = repack(codes, zp, N, kBlocks, bits);
      expect(again.packed).toEqual(q.packed);
      expect(again.zeroPoints).toEqual(q.zeroPoints);
      if (symmetric) expect(new Set(zp)).toEqual(new Set([bits === 4 ? 8 : 128]));

      // the padding past K holds the code of zero
      const width = kBlocks * blockSize;
      for (let n = 0; n < N; n++) {
        for (let k = K; k < width; k++) expect(codes[n * width + k]).toBe(zp[n * kBlocks + kBlocks - 1]);
      }

      const ref = referenceDequant(q);
      const deq = dequantizeLinear(q);
      expect(Array.from(deq)).toEqual(Array.from(ref, Math.fround));

      let err = 0;
      let norm = 0;
      for (let n = 0; n < N; n++) {
        for (let k = 0; k < K; k++) {
          const i = n * K + k;
          const s = q.scales[n * kBlocks + Math.floor(k / blockSize)]!;
          expect(Math.abs(w[i]! - ref[i]!)).toBeLessThanOrEqual(s / 2 + 1e-7 * s);
          err += (w[i]! - ref[i]!) ** 2;
          norm += w[i]! ** 2;
        }
      }
      expect(q.relError).toBeCloseTo(Math.sqrt(err / norm), 9);
      // the all-zero row is exact
      for (let k = 0; k < K; k++) expect(ref[k]).toBe(0);
    },
  );

  it('relative error is what 4 and 8 bits promise for Gaussian weights', () => {
    const N = 64;
    const K = 512;
    const rng = new Rng(7);
    const w = Float32Array.from({ length: N * K }, () => rng.normal());
    const errs = LAYOUTS.map(({ bits, blockSize }) => quantizeLinear(w, N, K, { bits, blockSize }).relError);
    console.log(
      'relError (Gaussian) 4-bit bs32/64/128, 8-bit bs32/64/128:',
      errs.map((e) => e.toFixed(5)),
    );
    // uniform quantization noise is step/sqrt(12); a Gaussian block of 32..128 spans ~5-6 sigma
    for (const e of errs.slice(0, 3)) expect(e).toBeLessThan(0.13);
    for (const e of errs.slice(3)) expect(e).toBeLessThan(0.008);
    // larger blocks never do better here, and 8 bits beats 4 bits by ~16x
    expect(errs[0]!).toBeLessThan(errs[2]!);
    expect(errs[0]! / errs[3]!).toBeGreaterThan(12);
  });

  it('reports every bad argument at once', () => {
    expect(() =>
      quantizeLinear(new Float32Array(6), 0, 3, { bits: 3 as 4, blockSize: 48 as 32 }),
    ).toThrowError(/N must be a positive integer.*bits must be 4 or 8.*blockSize must be 32, 64 or 128/);
    expect(() => quantizeLinear(new Float32Array(6), 2, 4)).toThrowError(
      /weight holds 6 values, \(N, K\) = \(2, 4\) needs 8/,
    );
  });
});

async function runMatMulNBits(q: QuantizedLinear, x: Float32Array, M: number, accuracyLevel: 0 | 4) {
  const g = new Graph();
  const xin = g.input('x', 'float32', ['batch', 'seq', q.K]);
  const w = addQuantizedWeights(g, 'proj.weight', q);
  g.output(quantizedLinear(xin, q, w, { accuracyLevel }), 'y');
  const session = await createSession(toModelBytes(g));
  try {
    const out = await session.run({ x: f32(x, [1, M, q.K]) });
    expect(out.y!.dims).toEqual([1, M, q.N]);
    return out.y!.data as Float32Array;
  } finally {
    await session.dispose();
  }
}

describe('matmulNBits through onnxruntime', () => {
  it.each(LAYOUTS)(
    'bits $bits, block $blockSize, K = 300: level 0 equals dequantize-then-matmul (float64)',
    async ({ bits, blockSize }) => {
      const M = 3;
      const N = 24;
      const K = 300;
      const rng = new Rng(bits + blockSize);
      const q = quantizeLinear(weights(rng, N, K), N, K, { bits, blockSize });
      const x = Float32Array.from({ length: M * K }, () => rng.normal());
      const ref = matmulT(x, referenceDequant(q), M, N, K);
      const y = await runMatMulNBits(q, x, M, 0);
      const rel = maxAbsDiff(y, ref) / maxAbs(ref);
      console.log(
        `MatMulNBits bits ${bits} bs ${blockSize}: level 0 max|y - ref| / max|ref| = ${rel.toExponential(2)}`,
      );
      // float32 accumulation over K = 300 terms: DESIGN measured 1.2e-6
      expect(rel).toBeLessThan(5e-6);
    },
  );

  it('accuracy_level 4 (int8 activations) stays within 1% of level 0', async () => {
    const M = 4;
    const N = 256;
    const K = 1024;
    const rng = new Rng(11);
    const x = Float32Array.from({ length: M * K }, () => rng.normal());
    for (const bits of [4, 8] as const) {
      const w = Float32Array.from({ length: N * K }, () => 0.05 * rng.normal());
      const q = quantizeLinear(w, N, K, { bits });
      const y0 = await runMatMulNBits(q, x, M, 0);
      const y4 = await runMatMulNBits(q, x, M, 4);
      let d = 0;
      let n = 0;
      for (let i = 0; i < y0.length; i++) {
        d += (y4[i]! - y0[i]!) ** 2;
        n += y0[i]! ** 2;
      }
      const rel = Math.sqrt(d / n);
      const maxRel = maxAbsDiff(y4, y0) / maxAbs(y0);
      console.log(
        `MatMulNBits bits ${bits}: level 4 vs 0 ||dy||/||y|| = ${rel.toExponential(2)}, max|dy|/max|y| = ${maxRel.toExponential(2)}`,
      );
      // int8 per-block activation quantization: noise ~ step/sqrt(12) with step = max|x_block|/127
      expect(rel).toBeLessThan(1e-2);
      expect(rel).toBeGreaterThan(0); // level 4 really took the integer path
    }
  });

  it('rejects a weight whose K does not match the input', () => {
    const g = new Graph();
    const x = g.input('x', 'float32', ['batch', 64]);
    const q = quantizeLinear(new Float32Array(8 * 96), 8, 96);
    const w = addQuantizedWeights(g, 'w', q);
    expect(() => g.scope('proj', () => matmulNBits(x, w, q))).toThrowError(
      /\/proj\/MatMulNBits: shape mismatch.*64 input features, the weight has K = 96/,
    );
  });
});

describe('quantized embedding', () => {
  it.each(LAYOUTS)(
    'bits $bits, block $blockSize: lookup equals the dequantized rows, shared with a tied LM head',
    async ({ bits, blockSize }) => {
      const V = 40;
      const d = 200; // not whole blocks
      const rng = new Rng(bits * 3 + blockSize);
      const q = quantizeLinear(weights(rng, V, d), V, d, { bits, blockSize });
      const g = new Graph();
      const ids = g.input('ids', 'int64', ['batch', 'seq']);
      const h = g.input('h', 'float32', ['batch', 'seq', d]);
      const placed: string[] = [];
      const w = addQuantizedWeights(g, 'model.embed_tokens.weight', q, (name, dtype, dims, data) => {
        placed.push(`${name}: ${dtype}[${dims.join(', ')}]`);
        return g.initializer(name, dtype, dims, data);
      });
      const kBlocks = Math.ceil(d / blockSize);
      expect(placed).toEqual([
        `model.embed_tokens.weight.packed: uint8[${V}, ${kBlocks}, ${(blockSize * bits) / 8}]`,
        `model.embed_tokens.weight.scales: float32[${V}, ${kBlocks}]`,
        `model.embed_tokens.weight.zero_points: uint8[${V}, ${Math.ceil((kBlocks * bits) / 8)}]`,
      ]);
      g.output(
        g.scope('embed', () => quantizedEmbedding(ids, q, w)),
        'rows',
      );
      g.output(
        g.scope('lm_head', () => quantizedLinear(h, q, w)),
        'logits',
      );
      const session = await createSession(toModelBytes(g));
      const idList = [0, 5, 39, 5, 1, 17];
      const hx = Float32Array.from({ length: 6 * d }, () => rng.normal());
      const out = await session.run({ ids: i64(idList, [2, 3]), h: f32(hx, [2, 3, d]) });
      await session.dispose();

      const ref = referenceDequant(q);
      expect(out.rows!.dims).toEqual([2, 3, d]);
      const expected = idList.flatMap((id) => Array.from(ref.subarray(id * d, (id + 1) * d), Math.fround));
      expect(Array.from(out.rows!.data as Float32Array)).toEqual(expected);

      const logits = matmulT(hx, ref, 6, V, d);
      expect(maxAbsDiff(out.logits!.data as Float32Array, logits) / maxAbs(logits)).toBeLessThan(5e-6);
    },
  );
});

describe('MatMulNBits backward: W dequantized in the graph', () => {
  it.each(LAYOUTS.flatMap((l) => [false, true].map((symmetric) => ({ ...l, symmetric }))))(
    'bits $bits, block $blockSize, symmetric $symmetric: dequantizeNBits equals dequantizeLinear bit for bit',
    async ({ bits, blockSize, symmetric }) => {
      const N = 5;
      const K = 200; // padded last block; 7 blocks at bs 32, an odd count of 4-bit zero points
      const q = quantizeLinear(weights(new Rng(bits + blockSize * 7), N, K), N, K, {
        bits,
        blockSize,
        symmetric,
      });
      const g = new Graph();
      const w = addQuantizedWeights(g, 'w', q);
      const after = g.input('after', 'float32', [1]);
      g.output(dequantizeNBits(w, q), 'stored');
      g.output(dequantizeNBits(w, q, { after }), 'run_time');
      // symmetric weights use the kernel's default zero point, 2^(bits-1): drop the tensor
      if (symmetric) g.output(dequantizeNBits({ packed: w.packed, scales: w.scales }, q), 'default_zero');
      const session = await createSession(toModelBytes(g));
      const out = await session.run({ after: f32([Number.NaN], [1]) }); // any value, even NaN, works
      await session.dispose();
      const want = Array.from(dequantizeLinear(q));
      expect(out.stored!.dims).toEqual([N, K]);
      expect(Array.from(out.stored!.data as Float32Array)).toEqual(want);
      expect(Array.from(out.run_time!.data as Float32Array)).toEqual(want);
      if (symmetric) expect(Array.from(out.default_zero!.data as Float32Array)).toEqual(want);
    },
  );

  it.each([
    { bits: 4, blockSize: 32 },
    { bits: 8, blockSize: 64 },
  ] as const)(
    'bits $bits, block $blockSize: gradcheck of dx (float32, eps 1e-2)',
    async ({ bits, blockSize }) => {
      const N = 24;
      const K = 72; // not whole blocks
      const rng = new Rng(bits * 17 + blockSize);
      // weights ~ N(0, 0.5): dx = R W is O(1), so the check's max(1, |numeric|) is a relative error
      const w = Float32Array.from({ length: N * K }, () => 0.5 * rng.normal());
      const q = quantizeLinear(w, N, K, { bits, blockSize });
      const { maxErr } = await gradcheck(
        (x: Value) => matmulNBits(x, addQuantizedWeights(x.graph, 'w', q), { ...q, accuracyLevel: 0 }),
        [{ name: 'x', shape: [2, 3, K] }],
        { dtype: 'float32', eps: 1e-2, tol: 1e-3 },
      );
      console.log(`MatMulNBits dx gradcheck bits ${bits}: max error ${maxErr.toExponential(2)}`);
      // y is linear in x, so central differences are exact up to float32 rounding of the loss
      expect(maxErr).toBeLessThan(1e-3);
    },
  );

  it('dx = dy @ dequant(W) for a rank-1 input too', async () => {
    const N = 16;
    const K = 40;
    const rng = new Rng(5);
    const q = quantizeLinear(
      Float32Array.from({ length: N * K }, () => rng.normal()),
      N,
      K,
    );
    const g = new Graph();
    const x = g.input('x', 'float32', [K]);
    const dy = g.input('dy', 'float32', [N]);
    const y = matmulNBits(x, addQuantizedWeights(g, 'w', q), q); // (N)
    const [dx] = grad(reduceSum(mul(y, dy), undefined, { keepdims: false }), [x]);
    g.output(dx!, 'dx');
    const dyData = Float32Array.from({ length: N }, () => rng.normal());
    const session = await createSession(toModelBytes(g));
    const out = await session.run({ x: f32(new Float32Array(K), [K]), dy: f32(dyData, [N]) });
    await session.dispose();
    const ref = referenceDequant(q);
    const want = Array.from({ length: K }, (_, k) =>
      dyData.reduce((acc, d, n) => acc + d * ref[n * K + k]!, 0),
    );
    expect(out.dx!.dims).toEqual([K]);
    expect(maxAbsDiff(out.dx!.data as Float32Array, want) / maxAbs(want)).toBeLessThan(1e-5);
  });

  it('onnxruntime keeps the dequantization at run time: no float copy of W among the initializers', async () => {
    const N = 48;
    const K = 96;
    const rng = new Rng(9);
    const q = quantizeLinear(
      Float32Array.from({ length: N * K }, () => rng.normal()),
      N,
      K,
    );
    const dir = mkdtempSync(join(tmpdir(), 'ladder-dequant-'));
    try {
      const floatInitializers = async (withAfter: boolean) => {
        const g = new Graph();
        const x = g.input('x', 'float32', ['batch', K]);
        const w = addQuantizedWeights(g, 'w', q);
        if (withAfter) {
          // the vjp: dx = dy @ W, W dequantized after dy exists
          const y = matmulNBits(x, w, q);
          g.output(grad(reduceSum(mul(y, y), undefined, { keepdims: false }), [x])[0]!, 'dx');
        } else {
          // the same product with W dequantized from initializers alone
          const dy = g.input('dy', 'float32', ['batch', N]);
          g.output(matmul(dy, dequantizeNBits(w, q)), 'dx');
        }
        const path = join(dir, `${withAfter}.onnx`);
        const session = await ort.InferenceSession.create(toModelBytes(g), {
          graphOptimizationLevel: 'all',
          optimizedModelFilePath: path,
        });
        await session.release();
        const model = fromBinary(ModelProtoSchema, readFileSync(path));
        return model
          .graph!.initializer.filter((t) => t.dataType === TensorProto_DataType.FLOAT)
          .map((t) => t.dims.reduce((a, b) => a * Number(b), 1));
      };
      // the control: with every input an initializer, onnxruntime folds W into a float constant
      expect(Math.max(...(await floatInitializers(false)))).toBeGreaterThanOrEqual(N * K);
      // the backward: only the scales (N x kBlocks) and scalars stay as float initializers
      expect(Math.max(...(await floatInitializers(true)))).toBeLessThanOrEqual(N * Math.ceil(K / 32));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
