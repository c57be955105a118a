import { add, type OpDef, rmsNorm, type Value } from '../../graph/index.ts';

// onnxruntime's fused inference kernels for the backbone (no gradients: the backbone is frozen).
// Each has a primitive-op twin, and tests prove both graphs compute the same numbers.

function sameAsInput(x: Value) {
  return { dtype: x.dtype, shape: x.shape };
}

/** RMSNorm in one kernel: ONNX-domain SimplifiedLayerNormalization (onnxruntime). */
const SIMPLIFIED_LAYER_NORM: OpDef = {
  type: 'SimplifiedLayerNormalization',
  infer: ([x]) => [sameAsInput(x!)],
};

/**
 * Residual add and RMSNorm in one pass, com.microsoft SkipSimplifiedLayerNormalization:
 * outputs (norm(x + skip) * gamma, -, -, x + skip). Outputs 1 and 2 are statistics we ignore.
 */
const SKIP_SIMPLIFIED_LAYER_NORM: OpDef = {
  type: 'SkipSimplifiedLayerNormalization',
  domain: 'com.microsoft',
  infer: ([x]) => {
    const stats = { dtype: x!.dtype, shape: [...x!.shape.slice(0, -1), 1] };
    return [sameAsInput(x!), stats, stats, sameAsInput(x!)];
  },
};

/**
 * com.microsoft RotaryEmbedding on (B, T, H*dh) with the rotate-half layout (interleaved = 0),
 * cos/sin caches (max_positions, dh/2) and the position ids.
 */
const ROTARY_EMBEDDING: OpDef = {
  type: 'RotaryEmbedding',
  domain: 'com.microsoft',
  infer: ([x]) => [sameAsInput(x!)],
};

export interface Norms {
  norm(x: Value, weight: Value, name: string): Value;
  /** x + delta and its norm: the residual stream and the next sublayer's input. */
  addNorm(x: Value, delta: Value, weight: Value, name: string): { sum: Value; normed: Value };
}

export function norms(fused: boolean, eps: number): Norms {
  if (!fused) {
    return {
      norm: (x, weight, name) => rmsNorm(x, weight, { eps, name }),
      addNorm: (x, delta, weight, name) => {
        const sum = add(x, delta, `${name}/residual`);
        return { sum, normed: rmsNorm(sum, weight, { eps, name }) };
      },
    };
  }
  return {
    norm: (x, weight, name) =>
      x.graph.op(SIMPLIFIED_LAYER_NORM, [x, weight], { axis: -1, epsilon: { float: eps } }, { name }),
    addNorm: (x, delta, weight, name) => {
      const [normed, , , sum] = x.graph.emit(
        SKIP_SIMPLIFIED_LAYER_NORM,
        [x, delta, weight],
        { epsilon: { float: eps } },
        { name },
      );
      return { sum: sum!, normed: normed! };
    },
  };
}

/** Fused rotary on projected (B, T, H*dh) activations; `caches` are (max_positions, dh/2). */
export function fusedRotary(
  x: Value, // (B, T, H*dh)
  positions: Value, // (B, T) int64
  caches: { cos: Value; sin: Value },
  heads: number,
  name: string,
): Value {
  return x.graph.op(
    ROTARY_EMBEDDING,
    [x, positions, caches.cos, caches.sin],
    { interleaved: 0, num_heads: heads },
    { name },
  );
}

/** cos/sin caches (max_positions, dh/2) from the inverse frequencies, for fusedRotary. */
export function rotaryCaches(
  invFreq: Float32Array,
  maxPositions: number,
): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length;
  const cos = new Float32Array(maxPositions * half);
  const sin = new Float32Array(maxPositions * half);
  for (let p = 0; p < maxPositions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * invFreq[i]!;
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
