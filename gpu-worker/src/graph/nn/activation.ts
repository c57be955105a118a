import type { Value } from '../builder.ts';
import { add, addScalar, mul, scale } from '../ops/arith.ts';
import { cast } from '../ops/cast.ts';
import { erf, sigmoid, tanh } from '../ops/unary.ts';

export interface SiluOptions {
  name: string;
}

/** SiLU / swish: x * sigmoid(x) (https://arxiv.org/abs/1702.03118). */
export function silu(x: Value, opts: Partial<SiluOptions> = {}): Value {
  const o = { name: 'silu', ...opts } satisfies SiluOptions;
  return x.graph.scope(o.name, () => mul(x, sigmoid(x)));
}

export interface GeluOptions {
  /** 'none': the exact erf form; 'tanh': the tanh approximation (GPT-2, Gemma). */
  approximate: 'none' | 'tanh';
  name: string;
}

const GELU_DEFAULTS: GeluOptions = { approximate: 'none', name: 'gelu' };

/**
 * GELU (https://arxiv.org/abs/1606.08415):
 *   none: 0.5 x (1 + erf(x / sqrt 2))
 *   tanh: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
 * ORT's CPU provider has no float64 Erf, so float64 inputs take erf in float32 (~1e-7 relative).
 */
export function gelu(x: Value, opts: Partial<GeluOptions> = {}): Value {
  const o = { ...GELU_DEFAULTS, ...opts } satisfies GeluOptions;
  return x.graph.scope(o.name, () => {
    let inner: Value;
    if (o.approximate === 'tanh') {
      const cubic = scale(mul(x, mul(x, x)), 0.044715);
      inner = tanh(scale(add(x, cubic), Math.sqrt(2 / Math.PI)));
    } else {
      const z = scale(x, Math.SQRT1_2);
      inner = x.dtype === 'float64' ? cast(erf(cast(z, 'float32')), 'float64') : erf(z);
    }
    return mul(scale(x, 0.5), addScalar(inner, 1));
  });
}
