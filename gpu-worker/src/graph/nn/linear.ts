import type { Value } from '../builder.ts';
import { add } from '../ops/arith.ts';
import { matmul } from '../ops/matmul.ts';

export interface LinearOptions {
  /** Scope of the emitted nodes: `/.../q_proj/MatMul`. */
  name: string;
}

const DEFAULTS: LinearOptions = { name: 'linear' };

/**
 * y = x w + b with w stored (in, out), so the product is a plain MatMul (no transpose) and its
 * gradient dw = x^T dy has w's layout.
 */
export function linear(
  x: Value, // (..., in)
  w: Value, // (in, out)
  b?: Value, // (out)
  opts: Partial<LinearOptions> = {},
): Value {
  const o = { ...DEFAULTS, ...opts } satisfies LinearOptions;
  return x.graph.scope(o.name, () => {
    const y = matmul(x, w); // (..., out)
    return b ? add(y, b) : y;
  });
}
