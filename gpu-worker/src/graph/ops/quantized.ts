import type { OpDef, Value } from '../builder.ts';
import { type Dim, dimEq, normAxis, shapeStr } from '../dims.ts';
import { add, mul, sub } from './arith.ts';
import { cast } from './cast.ts';
import { broadcast, floatDtype, rankAtLeast } from './check.ts';
import { matmul } from './matmul.ts';
import { concat, reshape, slice, squeeze, unsqueeze } from './shape.ts';

// Ops over blockwise-quantized frozen weights (com.microsoft contrib ops of onnxruntime). The
// weights never get gradients. MatMulNBits passes one to its input x (the QLoRA baseline's
// backward runs through every frozen layer); GatherBlockQuantized, an embedding lookup, has none.

export type AccuracyLevel = 0 | 1 | 2 | 3 | 4;

/** The three tensors of a blockwise-quantized weight, as graph values. */
export interface QuantizedWeights {
  packed: Value; // uint8 (N, kBlocks, blockSize * bits / 8)
  scales: Value; // float (N, kBlocks)
  zeroPoints: Value; // uint8 (N, ceil(kBlocks * bits / 8))
}

export interface MatMulNBitsOptions {
  /** Input features (the unpadded K; the packed weight holds whole blocks). */
  K: number;
  /** Output features. */
  N: number;
  bits: 4 | 8;
  blockSize: number;
  /**
   * 0 (default): activations stay float, weights dequantized (matches dequantize-then-matmul).
   * 4: activations quantized to int8 per block for an integer kernel (faster, less exact).
   */
  accuracyLevel?: AccuracyLevel;
  name?: string;
}

function expectShape(v: Value, what: string, dtype: string, dims: readonly Dim[]): void {
  if (v.dtype !== dtype || v.rank !== dims.length || !v.shape.every((d, i) => dimEq(d, dims[i]!))) {
    throw new Error(`${what} ${v} must be ${dtype}${shapeStr(dims)}`);
  }
}

function blockLayout(bits: unknown, blockSize: unknown): void {
  if (bits !== 4 && bits !== 8) throw new Error(`bits must be 4 or 8, got ${bits}`);
  const bs = blockSize as number;
  if (!Number.isInteger(bs) || bs < 16 || (bs & (bs - 1)) !== 0) {
    throw new Error(`block_size must be a power of two >= 16, got ${blockSize}`);
  }
}

/**
 * com.microsoft MatMulNBits: y (..., N) = x (..., K) @ dequant(B)^T, B blockwise quantized along K:
 *   B uint8 (N, kBlocks, blockSize*bits/8), 4-bit: low nibble = even k
 *   scales (N, kBlocks); zero_points uint8 (N, ceil(kBlocks*bits/8)), 4-bit: low nibble first
 */
export const MATMUL_NBITS: OpDef = {
  type: 'MatMulNBits',
  domain: 'com.microsoft',
  infer: ([x, packed, scales, zeroPoints], attrs) => {
    const { K, N, bits, block_size: bs } = attrs as Record<string, number>;
    blockLayout(bits, bs);
    floatDtype(x!);
    rankAtLeast(x!, 1);
    if (!dimEq(x!.shape.at(-1)!, K!)) {
      throw new Error(`shape mismatch: ${x} has ${x!.shape.at(-1)} input features, the weight has K = ${K}`);
    }
    const kBlocks = Math.ceil(K! / bs!);
    expectShape(packed!, 'packed weight', 'uint8', [N!, kBlocks, (bs! * bits!) / 8]);
    expectShape(scales!, 'scales', x!.dtype, [N!, kBlocks]);
    if (zeroPoints) expectShape(zeroPoints, 'zero points', 'uint8', [N!, Math.ceil((kBlocks * bits!) / 8)]);
    return [{ dtype: x!.dtype, shape: [...x!.shape.slice(0, -1), N!] }];
  },
  // dx (..., K) = dy (..., N) @ W (N, K), with W dequantized here in the backward (the forward
  // kernel never materialises it). The weights are frozen: no gradient for packed or scales.
  // The exact dequantization is used whatever the accuracy level: the gradient of the
  // level-0 function, as QLoRA differentiates through a dequantized weight.
  vjp: ({ inputs: [, packed, scales, zeroPoints], grads: [dy], attrs, needs }) => {
    if (!needs[0]) return [];
    const { K, N, bits, block_size: blockSize } = attrs as Record<string, number>;
    const w = dequantizeNBits(
      zeroPoints ? { packed: packed!, scales: scales!, zeroPoints } : { packed: packed!, scales: scales! },
      { K: K!, N: N!, bits: bits as 4 | 8, blockSize: blockSize! },
      { after: dy },
    ); // (N, K)
    if (dy!.rank >= 2) return [matmul(dy!, cast(w, dy!.dtype), { name: 'InputGrad' })]; // (..., K)
    return [squeeze(matmul(unsqueeze(dy!, [0]), cast(w, dy!.dtype), { name: 'InputGrad' }), [0])]; // (K)
  },
};

/** What the dequantizer needs to know about a MatMulNBits weight besides its tensors. */
export type NBitsLayout = Pick<MatMulNBitsOptions, 'K' | 'N' | 'bits' | 'blockSize'>;

/** uint8 bitwise ops (BitwiseAnd/Or opset 18, BitShift opset 11) to unpack the codes. */
function uint8Binary(type: string): OpDef {
  return {
    type,
    infer: ([a, b]) => {
      if (a!.dtype !== 'uint8' || b!.dtype !== 'uint8')
        throw new Error(`${type}: ${a} and ${b} must be uint8`);
      return [{ dtype: 'uint8', shape: broadcast(a!, b!) }];
    },
  };
}

const BITWISE_AND = uint8Binary('BitwiseAnd');
const BITWISE_OR = uint8Binary('BitwiseOr');
const BIT_SHIFT = uint8Binary('BitShift');

/** The low and high nibble of every byte, interleaved: (..., n) uint8 -> (..., 2n), low first. */
function unpackNibbles(bytes: Value, name: string): Value {
  const g = bytes.graph;
  const width = bytes.shape.at(-1);
  if (typeof width !== 'number') throw new Error(`unpackNibbles: the last axis of ${bytes} must be static`);
  return g.scope(name, () => {
    const low = g.op(BITWISE_AND, [bytes, g.scalar(0x0f, 'uint8')], {}, { name: 'LowNibble' });
    const high = g.op(
      BIT_SHIFT,
      [bytes, g.scalar(4, 'uint8')],
      { direction: 'RIGHT' },
      { name: 'HighNibble' },
    );
    const pairs = concat([unsqueeze(low, [-1]), unsqueeze(high, [-1])], -1, 'Interleave'); // (..., n, 2)
    return reshape(pairs, [...bytes.shape.slice(0, -1).map(() => 0), 2 * width]); // (..., 2n)
  });
}

/**
 * A uint8 zero (1) computed from one element of `after`, so that whatever uses it runs only once
 * `after` exists and cannot be constant-folded: onnxruntime folds nodes whose inputs are all
 * initializers, which would turn a dequantization into a float32 copy of W kept for the whole
 * session. (The float-to-uint8 Cast of any value, NaN included, ANDed with 0 is 0.)
 */
function runTimeZero(after: Value): Value {
  const g = after.graph;
  return g.scope('RunTimeZero', () => {
    const first = slice(reshape(after, [-1]), [0], [1], [0]); // (1)
    return g.op(BITWISE_AND, [cast(first, 'uint8'), g.scalar(0, 'uint8')], {}, { name: 'Zero' }); // (1) uint8
  });
}

export interface DequantizeOptions {
  /**
   * Dequantize only after this value is computed (the incoming gradient, in a backward): W then
   * exists in float only while it is used, and is never folded into a constant.
   */
  after?: Value;
}

//   [zero = Cast(after[0]) & 0, uint8; packed | zero, zero_points | zero, scales + zero: run-time copies]
//   packed uint8 (N, kBlocks, bs*bits/8)
//     4-bit: ─┬─ BitwiseAnd 0x0f ─ low nibble (even k) ─┐
//             └─ BitShift >> 4 ─── high nibble (odd k) ─┴─ Concat (.., bs/2, 2) ─ Reshape (N, kBlocks, bs)
//     ─ Cast ─ codes (N, kBlocks, bs)
//   zero_points uint8 (N, ceil(kBlocks*bits/8)) ─ [4-bit: unpack, Slice kBlocks] ─ Cast ─ (N, kBlocks, 1)
//   scales (N, kBlocks) ─ Unsqueeze ─ (N, kBlocks, 1)
//   W = (codes - z) * s (N, kBlocks, bs) ─ Reshape (N, kBlocks*bs) ─ [Slice K] ─ (N, K)
/**
 * The weight W (N, K) of a MatMulNBits layout, dequantized by ordinary ONNX ops at run time:
 * (code - zero point) * scale, bit for bit what dequantizeLinear computes in JS (code - z is an
 * exact small integer, one float multiply rounds it). Absent zero points mean 2^(bits-1), as in
 * the kernel. QLoRA's backward (https://arxiv.org/abs/2305.14314) dequantizes this way, one
 * layer at a time: with `after`, W is a transient tensor, freed once its product is formed.
 */
export function dequantizeNBits(
  w: QuantizedWeights | Omit<QuantizedWeights, 'zeroPoints'>,
  layout: NBitsLayout,
  opts: DequantizeOptions = {},
): Value {
  const { K, N, bits, blockSize: bs } = layout;
  const g = w.packed.graph;
  const kBlocks = Math.ceil(K / bs);
  const dtype = w.scales.dtype;
  return g.scope('Dequantize', () => {
    const zero = opts.after ? runTimeZero(opts.after) : undefined; // (1) uint8
    const atRunTime = (v: Value) => (zero ? g.op(BITWISE_OR, [v, zero], {}, { name: 'AtRunTime' }) : v);
    const bytes = atRunTime(w.packed); // (N, kBlocks, bs*bits/8)
    const codes = cast(bits === 4 ? unpackNibbles(bytes, 'codes') : bytes, dtype); // (N, kBlocks, bs)
    let zeroPoint: Value; // (N, kBlocks, 1), or a scalar
    if ('zeroPoints' in w && w.zeroPoints) {
      let zp = atRunTime(w.zeroPoints); // (N, ceil(kBlocks*bits/8))
      if (bits === 4) {
        zp = unpackNibbles(zp, 'zero_points'); // (N, 2*ceil(kBlocks/2))
        if (zp.shape[1] !== kBlocks) zp = slice(zp, [0], [kBlocks], [1]); // (N, kBlocks)
      }
      zeroPoint = unsqueeze(cast(zp, dtype), [-1]);
    } else {
      zeroPoint = g.scalar(2 ** (bits - 1), dtype);
    }
    const scales = zero ? add(w.scales, cast(zero, dtype), 'AtRunTime') : w.scales; // (N, kBlocks)
    const blocks = mul(sub(codes, zeroPoint, 'SubZeroPoint'), unsqueeze(scales, [-1]), 'MulScale'); // (N, kBlocks, bs)
    const padded = reshape(blocks, [N, kBlocks * bs]); // (N, Kp)
    return kBlocks * bs === K ? padded : slice(padded, [0], [K], [1]); // (N, K)
  });
}

/** y (..., N) = x (..., K) @ W^T for a MatMulNBits-quantized W (N, K). */
export function matmulNBits(x: Value, w: QuantizedWeights, opts: MatMulNBitsOptions): Value {
  const { K, N, bits, blockSize, accuracyLevel = 0 } = opts;
  return x.graph.op(
    MATMUL_NBITS,
    [x, w.packed, w.scales, w.zeroPoints],
    { K, N, bits, block_size: blockSize, accuracy_level: accuracyLevel },
    { name: opts.name },
  );
}

export interface GatherBlockQuantizedOptions {
  bits: 4 | 8;
  blockSize: number;
  /** The axis of `data` the blocks run along (its last axis in practice). */
  quantizeAxis: number;
  gatherAxis?: number;
  name?: string;
}

/**
 * com.microsoft GatherBlockQuantized: rows of a blockwise-quantized table, dequantized.
 *   data uint8, indices int, scales: data's shape with the quantize axis divided into blocks,
 *   zero_points uint8 like scales (4-bit: two per byte along the quantize axis, low nibble first).
 * With 4-bit data each byte holds two elements, so the quantize axis doubles in the output.
 */
export const GATHER_BLOCK_QUANTIZED: OpDef = {
  type: 'GatherBlockQuantized',
  domain: 'com.microsoft',
  infer: ([data, indices, scales, zeroPoints], attrs) => {
    const { bits, block_size: bs } = attrs as Record<string, number>;
    blockLayout(bits, bs);
    if (data!.dtype !== 'uint8') throw new Error(`data ${data} must be uint8`);
    if (indices!.dtype !== 'int64' && indices!.dtype !== 'int32') {
      throw new Error(`indices ${indices} must be int64 or int32`);
    }
    floatDtype(scales!);
    const ga = normAxis((attrs.gather_axis as number) ?? 0, data!.rank, `gather axis of ${data}`);
    const qa = normAxis(attrs.quantize_axis as number, data!.rank, `quantize axis of ${data}`);
    const perByte = 8 / bits!;
    const elems = data!.shape.map((d, i) => {
      if (i !== qa) return d;
      if (typeof d !== 'number') throw new Error(`the quantize axis of ${data} must be static`);
      return d * perByte;
    });
    const scaleDims = elems.map((d, i) => (i === qa ? Math.ceil((d as number) / bs!) : d));
    expectShape(scales!, 'scales', scales!.dtype, scaleDims);
    if (zeroPoints) {
      const zpDims = scaleDims.map((d, i) => (i === qa ? Math.ceil((d as number) / perByte) : d));
      expectShape(zeroPoints, 'zero points', 'uint8', zpDims);
    }
    return [
      { dtype: scales!.dtype, shape: [...elems.slice(0, ga), ...indices!.shape, ...elems.slice(ga + 1)] },
    ];
  },
};

/** Dequantized rows data[indices] of a blockwise-quantized table (an 8- or 4-bit embedding). */
export function gatherBlockQuantized(
  data: Value,
  indices: Value,
  scales: Value,
  zeroPoints: Value,
  opts: GatherBlockQuantizedOptions,
): Value {
  return data.graph.op(
    GATHER_BLOCK_QUANTIZED,
    [data, indices, scales, zeroPoints],
    {
      gather_axis: opts.gatherAxis ?? 0,
      quantize_axis: opts.quantizeAxis,
      block_size: opts.blockSize,
      bits: opts.bits,
    },
    { name: opts.name },
  );
}
