import type { DType, ExternalDataWriter, Graph, TypedData, Value } from '../../graph/index.ts';

/**
 * Puts frozen backbone weights into the graph: inline for small test models, or appended to the
 * external data file as they are converted, so only one tensor is in memory at a time.
 */
export class WeightPlacer {
  /** Bytes of weights placed, by kind, for the build report. */
  readonly bytes = { linear: 0, other: 0 };

  constructor(
    private readonly g: Graph,
    private readonly writer: ExternalDataWriter | undefined,
  ) {}

  place(
    name: string,
    dtype: DType,
    dims: readonly number[],
    data: TypedData,
    kind: 'linear' | 'other',
  ): Value {
    this.bytes[kind] += data.byteLength;
    if (this.writer && data.byteLength >= 4096) {
      return this.g.externalInitializer(name, dtype, dims, this.writer.append(data));
    }
    return this.g.initializer(name, dtype, dims, data);
  }
}

/** (N, K) row-major -> (K, N) row-major: HF stores y = x W^T, MatMul wants x @ W'. */
export function transposeWeight(w: Float32Array, n: number, k: number): Float32Array {
  const out = new Float32Array(n * k);
  const tile = 64;
  for (let i0 = 0; i0 < n; i0 += tile) {
    for (let j0 = 0; j0 < k; j0 += tile) {
      const iEnd = Math.min(i0 + tile, n);
      const jEnd = Math.min(j0 + tile, k);
      for (let i = i0; i < iEnd; i++) {
        for (let j = j0; j < jEnd; j++) out[j * n + i] = w[i * k + j]!;
      }
    }
  }
  return out;
}
