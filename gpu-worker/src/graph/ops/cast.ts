import { HALF_MAX } from '../../util/half.ts';
import type { OpDef, Value } from '../builder.ts';
import { isFloat } from '../builder.ts';
import type { DType } from '../proto.ts';
import { ONNX_DTYPE } from '../proto.ts';

const BY_CODE = new Map(Object.entries(ONNX_DTYPE).map(([k, v]) => [v as number, k as DType]));

/** Cast; the gradient casts back (only between float types; other casts stop gradients). */
export const CAST: OpDef = {
  type: 'Cast',
  infer: ([x], { to }) => {
    const dtype = BY_CODE.get(to as number);
    if (!dtype) throw new Error(`cast ${x}: unsupported target type code ${to}`);
    return [{ dtype, shape: x!.shape }];
  },
  vjp: ({ inputs: [x], grads: [g] }) => [
    isFloat(x!.dtype) && isFloat(g!.dtype) ? cast(g!, x!.dtype) : undefined,
  ],
};

export function cast(x: Value, dtype: DType): Value {
  if (x.dtype === dtype) return x;
  return x.graph.op(CAST, [x], { to: ONNX_DTYPE[dtype] });
}

export const CLIP: OpDef = {
  type: 'Clip',
  infer: ([x]) => [{ dtype: x!.dtype, shape: x!.shape }],
};

/**
 * x as float16, values past its range clamped to +-65504 (a plain Cast makes them infinite). No
 * gradient: for values that only leave the graph (the side nets' taps).
 */
export function toHalfClamped(x: Value): Value {
  const g = x.graph;
  return cast(g.op(CLIP, [x, g.scalar(-HALF_MAX, x.dtype), g.scalar(HALF_MAX, x.dtype)]), 'float16');
}
