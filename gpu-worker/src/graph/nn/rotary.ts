import { GraphError, type Value } from '../builder.ts';
import { add, mul, sub } from '../ops/arith.ts';
import { cast } from '../ops/cast.ts';
import { concat, split, unsqueeze } from '../ops/shape.ts';
import { cos, sin } from '../ops/trig.ts';

// Rotary position embedding, RoFormer (https://arxiv.org/abs/2104.09864), in the Llama / Hugging
// Face "rotate_half" layout: dimension i of the first half and dimension i of the second half of a
// head form one pair, rotated by the angle pos * theta^(-2i / headDim).

export interface RotaryTables {
  cos: Value; // (B, T, headDim/2) float32
  sin: Value; // (B, T, headDim/2) float32
}

export interface RotaryOptions {
  name: string;
  /** Inverse frequencies (headDim/2) when not theta^(-2i / headDim), e.g. llama3-scaled ones. */
  invFreq?: Float32Array | undefined;
}

/**
 *   positions (B, T) int64 ─ Cast ─ Unsqueeze (B, T, 1) ─ Mul inv_freq (headDim/2) ─ angles (B, T, headDim/2)
 *                                                                                    ├─ Cos ─ cos
 *                                                                                    └─ Sin ─ sin
 * inv_freq[i] = theta^(-2i / headDim) is a constant; the angles are computed in the graph, so the
 * positions can be a run-time input (padding offsets, decoding steps).
 */
export function rotaryTables(
  positions: Value, // (B, T) int64
  headDim: number,
  theta = 10_000,
  opts: Partial<RotaryOptions> = {},
): RotaryTables {
  const o = { name: 'rotary', ...opts } satisfies RotaryOptions;
  if (positions.dtype !== 'int64' && positions.dtype !== 'int32') {
    throw new GraphError(`rotaryTables: positions ${positions} must be int64`);
  }
  if (!Number.isInteger(headDim) || headDim <= 0 || headDim % 2 !== 0) {
    throw new GraphError(`rotaryTables: headDim must be a positive even integer, got ${headDim}`);
  }
  const g = positions.graph;
  return g.scope(o.name, () => {
    const half = headDim / 2;
    const invFreq = o.invFreq ?? Float32Array.from({ length: half }, (_, i) => theta ** ((-2 * i) / headDim));
    if (invFreq.length !== half) {
      throw new GraphError(`rotaryTables: ${invFreq.length} inverse frequencies for headDim ${headDim}`);
    }
    const freqs = g.constant('float32', [half], invFreq); // (headDim/2)
    const angles = mul(unsqueeze(cast(positions, 'float32'), [-1]), freqs); // (B, T, headDim/2)
    return { cos: cos(angles), sin: sin(angles) };
  });
}

/**
 * Rotate each head of x by the tables:
 *
 *   x (B, H, T, Dh) ─ Split ─ x1 (.., Dh/2) ─┬─ x1 cos - x2 sin ─┐
 *                           └ x2 (.., Dh/2) ─┴─ x2 cos + x1 sin ─┴─ Concat ─ (B, H, T, Dh)
 *
 * which is HF's x * cat(cos, cos) + rotate_half(x) * cat(sin, sin). Tables of rank 3 (B, T, Dh/2)
 * get size-1 head axes inserted after the batch axis, so x may also be (B, Hkv, G, T, Dh).
 */
export function applyRotary(
  x: Value, // (B, H, T, Dh)
  cosTable: Value, // (B, T, Dh/2)
  sinTable: Value, // (B, T, Dh/2)
  opts: Partial<RotaryOptions> = {},
): Value {
  const o = { name: 'rotary', ...opts } satisfies RotaryOptions;
  const headDim = x.shape.at(-1);
  if (typeof headDim !== 'number' || headDim % 2 !== 0) {
    throw new GraphError(`applyRotary: the head axis of ${x} must be static and even`);
  }
  return x.graph.scope(o.name, () => {
    const fit = (t: Value) => {
      const c = cast(t, x.dtype);
      const missing = x.rank - c.rank;
      if (c.rank < 3 || missing <= 0) return c; // numpy broadcasting lines them up already
      return unsqueeze(
        c,
        Array.from({ length: missing }, (_, i) => i + 1),
      ); // (B, 1.., T, Dh/2)
    };
    const c = fit(cosTable);
    const s = fit(sinTable);
    const [x1, x2] = split(x, -1, [headDim / 2, headDim / 2]); // (..., Dh/2) each
    const first = sub(mul(x1!, c), mul(x2!, s));
    const second = add(mul(x2!, c), mul(x1!, s));
    return concat([first, second], -1); // (..., Dh)
  });
}
