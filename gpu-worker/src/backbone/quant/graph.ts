import type { DType, Graph, TypedData, Value } from '../../graph/builder.ts';
import {
  type AccuracyLevel,
  gatherBlockQuantized,
  matmulNBits,
  type QuantizedWeights,
} from '../../graph/ops/quantized.ts';
import { reshape, slice } from '../../graph/ops/shape.ts';
import type { QuantizedLinear } from '../types.ts';

/** What the graph needs to know about a quantized weight besides its tensors. */
export type QuantizedLayout = Pick<QuantizedLinear, 'bits' | 'blockSize' | 'N' | 'K'>;

/** Makes an initializer: graph.initializer, or a placer that writes large ones to external data. */
export type PlaceInitializer = (
  name: string,
  dtype: DType,
  dims: readonly number[],
  data: TypedData,
) => Value;

/**
 * Add a QuantizedLinear's tensors as initializers named after `name` (an HF parameter path such
 * as `model.layers.0.self_attn.q_proj.weight`): `<name>.packed`, `<name>.scales`, `<name>.zero_points`.
 */
export function addQuantizedWeights(
  graph: Graph,
  name: string,
  q: QuantizedLinear,
  place: PlaceInitializer = (n, dtype, dims, data) => graph.initializer(n, dtype, dims, data),
): QuantizedWeights {
  const kBlocks = Math.ceil(q.K / q.blockSize);
  return {
    packed: place(`${name}.packed`, 'uint8', [q.N, kBlocks, (q.blockSize * q.bits) / 8], q.packed),
    scales: place(`${name}.scales`, 'float32', [q.N, kBlocks], q.scales),
    zeroPoints: place(`${name}.zero_points`, 'uint8', [q.N, Math.ceil((kBlocks * q.bits) / 8)], q.zeroPoints),
  };
}

export interface QuantizedLinearOptions {
  accuracyLevel?: AccuracyLevel;
  name?: string;
}

/** y (..., N) = x (..., K) @ W^T for a quantized W added with addQuantizedWeights. */
export function quantizedLinear(
  x: Value,
  layout: QuantizedLayout,
  w: QuantizedWeights,
  opts: QuantizedLinearOptions = {},
): Value {
  return matmulNBits(x, w, { ...layout, ...opts });
}

//   ids (...)
//     |  GatherBlockQuantized          8-bit: table (V, kBlocks, bs), scales/zero points (V, kBlocks, 1)
//     v                                4-bit: table (V, kBlocks*bs/2), scales (V, kBlocks), zp packed
//   rows (..., kBlocks, bs) or (..., kBlocks*bs)
//     |  Reshape (8-bit), Slice when K is not whole blocks
//     v
//   (..., K)
/**
 * Embedding lookup from a quantized table (V = layout.N rows of width K), dequantized to
 * float32. It reads the same tensors as a MatMulNBits LM head, so a tied embedding is stored
 * once: the 8-bit path only reshapes the small scales and zero points; the 4-bit path reshapes
 * the packed table itself (onnxruntime folds that into a copy at load).
 */
export function quantizedEmbedding(ids: Value, layout: QuantizedLayout, w: QuantizedWeights): Value {
  const { bits, blockSize, N: V, K } = layout;
  const kBlocks = Math.ceil(K / blockSize);
  const Kp = kBlocks * blockSize;
  const keep = ids.shape.map(() => 0);
  let rows: Value;
  if (bits === 8) {
    rows = gatherBlockQuantized(
      w.packed,
      ids,
      reshape(w.scales, [V, kBlocks, 1]),
      reshape(w.zeroPoints, [V, kBlocks, 1]),
      { bits, blockSize, quantizeAxis: 2, name: 'GatherBlockQuantized' },
    ); // (..., kBlocks, bs)
    rows = reshape(rows, [...keep, Kp]);
  } else {
    rows = gatherBlockQuantized(reshape(w.packed, [V, Kp / 2]), ids, w.scales, w.zeroPoints, {
      bits,
      blockSize,
      quantizeAxis: 1,
      name: 'GatherBlockQuantized',
    }); // (..., Kp)
  }
  return Kp === K ? rows : slice(rows, [0], [K], [ids.rank]);
}
