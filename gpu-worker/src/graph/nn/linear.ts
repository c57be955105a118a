import { customGrad } from '../autodiff.ts';
import { GraphError, type Value } from '../builder.ts';
import { add } from '../ops/arith.ts';
import { cast } from '../ops/cast.ts';
import { matmul } from '../ops/matmul.ts';
import { reduceSum } from '../ops/reduce.ts';
import { reshape } from '../ops/shape.ts';

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

/**
 * linear(x, w, b) for a float16 x that is a constant of the step (a backbone tap fed to a side
 * network): widened to w's dtype for the product, and widened again in the backward for
 * dw = x^T dy, so between the two only the float16 copy is kept, not a float32 one twice its size.
 * x gets no gradient.
 */
export function halfInputLinear(
  x: Value, // (..., in) float16
  w: Value, // (in, out)
  b?: Value, // (out)
  opts: Partial<LinearOptions> = {},
): Value {
  const o = { ...DEFAULTS, ...opts } satisfies LinearOptions;
  const [inDim, outDim] = w.shape;
  if (x.dtype !== 'float16' || w.rank !== 2 || typeof inDim !== 'number' || typeof outDim !== 'number') {
    throw new GraphError(
      `${x.graph.path}/${o.name}: halfInputLinear wants x float16 and w (in, out) static; got ${x}, ${w}`,
    );
  }
  return x.graph.scope(o.name, () => {
    const y = linear(cast(x, w.dtype), w, b, { name: 'forward' });
    return customGrad(y, b ? [x, w, b] : [x, w], (gy, [x16, w2]) => {
      const rows = reshape(cast(x16!, w2!.dtype), [-1, inDim]); // (N, in), widened again
      const grads = reshape(gy, [-1, outDim]); // (N, out)
      const dw = matmul(rows, grads, { transA: true }); // (in, out)
      return b ? [undefined, dw, reduceSum(grads, [0])] : [undefined, dw];
    });
  });
}
