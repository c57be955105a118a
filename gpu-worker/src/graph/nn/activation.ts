import { customGrad } from '../autodiff.ts';
import type { Value } from '../builder.ts';
import { add, addScalar, mul, scale, sub } from '../ops/arith.ts';
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

/**
 * The SwiGLU gate of Llama-style MLPs (https://arxiv.org/abs/2002.05202): silu(gate) * up. Its
 * backward keeps only gate and up and recomputes s = sigmoid(gate), rather than keeping s and
 * silu(gate) from the forward (two fewer (..., d_ff) tensors per layer held for the backward):
 *   d up = dy · gate·s        d gate = dy · up · s·(1 + gate·(1 - s))
 */
export function swiglu(gate: Value, up: Value, opts: Partial<SiluOptions> = {}): Value {
  const o = { name: 'swiglu', ...opts } satisfies SiluOptions;
  return gate.graph.scope(o.name, () => {
    const y = mul(silu(gate), up);
    return customGrad(y, [gate, up], (dy, [gate2, up2]) => {
      const s = sigmoid(gate2!);
      const one = gate2!.graph.scalar(1, gate2!.dtype);
      const dGate = mul(mul(dy, up2!), mul(s, add(one, mul(gate2!, sub(one, s)))));
      return [dGate, mul(dy, mul(gate2!, s))];
    });
  });
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
