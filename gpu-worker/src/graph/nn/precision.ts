import type { Value } from '../builder.ts';
import { cast } from '../ops/cast.ts';

/** x in float32 when it is narrower: softmax, norms and losses accumulate in at least float32. */
export function atLeastFloat32(x: Value): Value {
  return x.dtype === 'float16' ? cast(x, 'float32') : x;
}
