import { customGrad } from '../autodiff.ts';
import type { Value } from '../builder.ts';
import { add, addScalar, mul, sub } from '../ops/arith.ts';
import { cast } from '../ops/cast.ts';
import { reduceMean } from '../ops/reduce.ts';
import { reciprocal, sqrt } from '../ops/unary.ts';
import { atLeastFloat32 } from './precision.ts';

// Normalisations over the last axis, computed in at least float32 and cast back to x's dtype
// before the affine weight, as Llama and Qwen do.

export interface NormOptions {
  eps: number;
  name: string;
}

/**
 * RMSNorm (https://arxiv.org/abs/1910.07467):
 *   y = x / sqrt(mean(x^2) + eps) * weight
 */
export function rmsNorm(
  x: Value, // (..., C)
  weight: Value, // (C)
  opts: Partial<NormOptions> = {},
): Value {
  const o = { eps: 1e-6, name: 'rms_norm', ...opts } satisfies NormOptions;
  return x.graph.scope(o.name, () => {
    const h = atLeastFloat32(x); // (..., C)
    const meanSquare = reduceMean(mul(h, h), [-1]); // (..., 1)
    const invRms = reciprocal(sqrt(addScalar(meanSquare, o.eps))); // (..., 1)
    const y = mul(cast(mul(h, invRms), x.dtype), weight); // (..., C)
    if (h !== x || weight.dtype !== x.dtype) return y;
    // The backward keeps x and r = invRms only (not x·r and the squares), with u = dy·w:
    //   dx = r·u - x·r³·mean(u·x)        dw = Σ dy·x·r   (summed over the leading axes by the driver)
    return customGrad(y, [x, weight, invRms], (dy, [x2, w2, r2]) => {
      const u = mul(dy, w2!);
      const r3 = mul(r2!, mul(r2!, r2!));
      const dx = sub(mul(u, r2!), mul(x2!, mul(r3, reduceMean(mul(u, x2!), [-1]))));
      return [dx, mul(dy, mul(x2!, r2!)), undefined];
    });
  });
}

/**
 * LayerNorm (https://arxiv.org/abs/1607.06450):
 *   y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias      (biased variance, as PyTorch)
 */
export function layerNorm(
  x: Value, // (..., C)
  weight: Value, // (C)
  bias: Value | undefined, // (C)
  opts: Partial<NormOptions> = {},
): Value {
  const o = { eps: 1e-5, name: 'layer_norm', ...opts } satisfies NormOptions;
  return x.graph.scope(o.name, () => {
    const h = atLeastFloat32(x); // (..., C)
    const centered = sub(h, reduceMean(h, [-1])); // (..., C)
    const variance = reduceMean(mul(centered, centered), [-1]); // (..., 1)
    const normed = mul(centered, reciprocal(sqrt(addScalar(variance, o.eps)))); // (..., C)
    const y = mul(cast(normed, x.dtype), weight);
    return bias ? add(y, bias) : y;
  });
}
