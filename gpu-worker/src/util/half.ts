/**
 * IEEE 754 binary16 ("fp16") conversion (the activation cache, F16 checkpoints): float32 -> half with
 * round-to-nearest, ties to even (what a hardware cast does), and half -> float32 exactly.
 *
 *   half bits:  s | eeeee | mmmmmmmmmm        bias 15; e = 0: subnormal m * 2^-24; e = 31: inf / NaN
 *   float bits: s | eeeeeeee | m (23 bits)    bias 127
 */

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** The largest finite half (0x7bff); finite floats at or past 65520 round to infinity. */
export const HALF_MAX = 65504;

/** Round the 32-bit `value >> shift` to nearest, ties to even, given the bits shifted out. */
function roundShift(value: number, shift: number): number {
  const q = value >>> shift;
  const rest = value & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return rest > half || (rest === half && (q & 1) === 1) ? q + 1 : q;
}

/** The half bits nearest to `x` (as a float32 first: the cache stores float32 activations). */
export function toHalfBits(x: number): number {
  F32[0] = x;
  const bits = U32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0); // inf, quiet NaN
  const e = exp - 127 + 15; // the half's biased exponent
  if (e >= 0x1f) return sign | 0x7c00; // past 65536: infinity
  if (e <= 0) {
    // A half subnormal (or zero): m * 2^-24 with m = (1.mant) * 2^(e - 1) * 2^10.
    if (e < -10) return sign; // below 2^-25: nearer to 0 than to 2^-24
    return sign | roundShift(mant | 0x800000, 14 - e); // may round up to 0x400, the smallest normal
  }
  // Normal: keep 10 of 23 mantissa bits; a carry may run into the exponent (up to 0x7c00 = inf).
  return sign | roundShift((e << 23) | mant, 13);
}

const DECODE = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    table[h] =
      e === 0
        ? sign * m * 2 ** -24
        : e === 0x1f
          ? m
            ? Number.NaN
            : sign * Number.POSITIVE_INFINITY
          : sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  return table;
})();

/** The float value of half bits `h` (exact: every half is a float32). */
export function fromHalfBits(h: number): number {
  return DECODE[h & 0xffff]!;
}

/**
 * Encode `src` into `dst` (same length); returns the index of the first finite value that became
 * infinite (|x| >= 65520), or -1. The caller decides what an overflow means.
 */
export function encodeHalf(src: Float32Array, dst: Uint16Array): number {
  if (dst.length !== src.length) throw new RangeError(`encodeHalf: ${src.length} values into ${dst.length}`);
  let overflow = -1;
  for (let i = 0; i < src.length; i++) {
    const h = toHalfBits(src[i]!);
    dst[i] = h;
    if (overflow < 0 && (h & 0x7fff) === 0x7c00 && Number.isFinite(src[i]!)) overflow = i;
  }
  return overflow;
}

/** Decode `src` into `dst` (same length). */
export function decodeHalf(src: Uint16Array, dst: Float32Array): void {
  if (dst.length !== src.length) throw new RangeError(`decodeHalf: ${src.length} values into ${dst.length}`);
  for (let i = 0; i < src.length; i++) dst[i] = DECODE[src[i]!]!;
}
