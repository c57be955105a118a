import type { QuantizedLinear } from '../types.ts';

// Blockwise weight quantization into com.microsoft MatMulNBits layout (see QuantizedLinear).
// Each output row n is cut along K into blocks of `blockSize`; a block gets one float32 scale s
// and one integer zero point z, and each weight w becomes a code q in [0, 2^bits - 1] with
//   w ~= (q - z) * s
//   asymmetric (default): the range [min(0, w_min), max(0, w_max)] maps onto [0, 2^bits - 1]
//     (zero stays exactly representable, so the zero padding of the last block costs nothing);
//   symmetric: s = max|w| / (2^(bits-1) - 1), z = 2^(bits-1) (the kernel's default zero point).
// Every element is within s/2 of its original: q = round(w / s + z) never needs clamping by
// more than rounding noise, because s is rounded up to the next float32 when rounding shrank it.

export interface QuantizeOptions {
  bits: 4 | 8;
  blockSize: 32 | 64 | 128;
  symmetric: boolean;
}

export const QUANTIZE_DEFAULTS: QuantizeOptions = { bits: 4, blockSize: 32, symmetric: false };

const F32_ULP = 2 ** -23;

function check(weight: Float32Array, N: number, K: number, o: QuantizeOptions): void {
  const problems: string[] = [];
  if (!Number.isSafeInteger(N) || N < 1) problems.push(`N must be a positive integer, got ${N}`);
  if (!Number.isSafeInteger(K) || K < 1) problems.push(`K must be a positive integer, got ${K}`);
  if (o.bits !== 4 && o.bits !== 8) problems.push(`bits must be 4 or 8, got ${o.bits}`);
  if (o.blockSize !== 32 && o.blockSize !== 64 && o.blockSize !== 128) {
    problems.push(`blockSize must be 32, 64 or 128, got ${o.blockSize}`);
  }
  if (!(weight instanceof Float32Array)) problems.push('weight must be a Float32Array');
  else if (problems.length === 0 && weight.length !== N * K) {
    problems.push(`weight holds ${weight.length} values, (N, K) = (${N}, ${K}) needs ${N * K}`);
  }
  if (problems.length) throw new Error(`quantizeLinear: ${problems.join('; ')}`);
}

/** Smallest float32 s with s * steps >= range (so the top of the range needs no clamping). */
function scaleFor(range: number, steps: number): number {
  let s = Math.fround(range / steps);
  if (s * steps < range) s = Math.fround(s * (1 + F32_ULP));
  return s;
}

/**
 * Quantize an HF linear weight (N out, K in), row-major, blockwise along K. K is padded with
 * zeros to whole blocks. relError is ||W - dequant||_F / ||W||_F (0 for an all-zero W).
 */
export function quantizeLinear(
  weight: Float32Array,
  N: number,
  K: number,
  opts: Partial<QuantizeOptions> = {},
): QuantizedLinear {
  const o = { ...QUANTIZE_DEFAULTS, ...opts } satisfies QuantizeOptions;
  check(weight, N, K, o);
  const { bits, blockSize: bs, symmetric } = o;
  const kBlocks = Math.ceil(K / bs);
  const blob = (bs * bits) / 8;
  const zpCols = Math.ceil((kBlocks * bits) / 8);
  const packed = new Uint8Array(N * kBlocks * blob);
  const scales = new Float32Array(N * kBlocks);
  const zeroPoints = new Uint8Array(N * zpCols);
  const maxq = (1 << bits) - 1;
  const mid = 1 << (bits - 1);
  const tail = new Float32Array(bs); // the last, partial block of a row, zero padded
  let errSq = 0;
  let normSq = 0;

  for (let n = 0; n < N; n++) {
    const row = n * K;
    for (let b = 0; b < kBlocks; b++) {
      const k0 = b * bs;
      let src = weight;
      let off = row + k0;
      if (k0 + bs > K) {
        tail.fill(0);
        tail.set(weight.subarray(row + k0, row + K));
        src = tail;
        off = 0;
      }
      // range of the block
      let lo = 0;
      let hi = 0;
      for (let j = 0; j < bs; j++) {
        const w = src[off + j]!;
        if (w < lo) lo = w;
        else if (w > hi) hi = w;
      }
      let s: number;
      let z: number;
      if (symmetric) {
        s = scaleFor(Math.max(hi, -lo), mid - 1);
        z = mid;
      } else {
        s = scaleFor(hi - lo, maxq);
        z = s === 0 ? 0 : Math.min(maxq, Math.round(-lo / s));
      }
      const inv = s === 0 ? 0 : 1 / s;
      const sb = n * kBlocks + b;
      scales[sb] = s;
      // codes: w/s + z + 0.5 >= 0 up to rounding noise, so `| 0` (truncation) is round-half-up
      // and never goes below 0; only the top needs a clamp (a .5 tie at the top of the range)
      const dst = sb * blob;
      if (bits === 4) {
        for (let j = 0; j < bs; j += 2) {
          const w0 = src[off + j]!;
          const w1 = src[off + j + 1]!;
          const q0 = Math.min((w0 * inv + z + 0.5) | 0, maxq);
          const q1 = Math.min((w1 * inv + z + 0.5) | 0, maxq);
          const e0 = w0 - (q0 - z) * s;
          const e1 = w1 - (q1 - z) * s;
          errSq += e0 * e0 + e1 * e1;
          normSq += w0 * w0 + w1 * w1;
          packed[dst + (j >> 1)] = q0 | (q1 << 4);
        }
        zeroPoints[n * zpCols + (b >> 1)]! |= z << ((b & 1) << 2);
      } else {
        for (let j = 0; j < bs; j++) {
          const w = src[off + j]!;
          const q = Math.min((w * inv + z + 0.5) | 0, maxq);
          const e = w - (q - z) * s;
          errSq += e * e;
          normSq += w * w;
          packed[dst + j] = q;
        }
        zeroPoints[n * zpCols + b] = z;
      }
    }
  }
  const relError = normSq === 0 ? 0 : Math.sqrt(errSq / normSq);
  return { bits, blockSize: bs, N, K, packed, scales, zeroPoints, relError };
}

/** The float32 weight (N, K) a QuantizedLinear stands for: (q - z) * s, padding dropped. */
export function dequantizeLinear(q: QuantizedLinear): Float32Array {
  const { bits, blockSize: bs, N, K, packed, scales, zeroPoints } = q;
  const kBlocks = Math.ceil(K / bs);
  const blob = (bs * bits) / 8;
  const zpCols = Math.ceil((kBlocks * bits) / 8);
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < kBlocks; b++) {
      const sb = n * kBlocks + b;
      const s = scales[sb]!;
      const zByte = zeroPoints[n * zpCols + (bits === 4 ? b >> 1 : b)]!;
      const z = bits === 4 ? (zByte >> ((b & 1) << 2)) & 15 : zByte;
      const k0 = b * bs;
      const end = Math.min(bs, K - k0);
      const o = n * K + k0;
      const src = sb * blob;
      if (bits === 4) {
        for (let j = 0; j < end; j++) {
          const byte = packed[src + (j >> 1)]!;
          out[o + j] = (((byte >> ((j & 1) << 2)) & 15) - z) * s;
        }
      } else {
        for (let j = 0; j < end; j++) out[o + j] = (packed[src + j]! - z) * s;
      }
    }
  }
  return out;
}
