import type { OpDef, Value } from '../builder.ts';
import { type Dim, dimEq, normAxis, shapeStr } from '../dims.ts';
import { floatDtype, rankAtLeast } from './check.ts';

// Ops over blockwise-quantized frozen weights (com.microsoft contrib ops of onnxruntime). Neither
// has a vjp: the weights are frozen and the side network's backward never enters the backbone,
// so gradients stop here.

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
};

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
