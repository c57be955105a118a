import type { Value } from '../builder.ts';
import { broadcastShapes, type Dim, shapeStr } from '../dims.ts';
import type { DType } from '../proto.ts';

/** Shared input checks; messages name the operands, the builder prefixes the node path. */

export function sameDtype(inputs: readonly Value[]): DType {
  const first = inputs[0]!;
  for (const v of inputs.slice(1)) {
    if (v.dtype !== first.dtype) throw new Error(`dtype clash: ${first} vs ${v}`);
  }
  return first.dtype;
}

export function floatDtype(v: Value): DType {
  if (v.dtype !== 'float32' && v.dtype !== 'float64' && v.dtype !== 'float16') {
    throw new Error(`expected a floating-point tensor, got ${v}`);
  }
  return v.dtype;
}

export function broadcast(a: Value, b: Value): Dim[] {
  const out = broadcastShapes(a.shape, b.shape);
  if (!out) throw new Error(`shape mismatch: ${a} and ${b} do not broadcast`);
  return out;
}

export function rankAtLeast(v: Value, n: number): void {
  if (v.rank < n) throw new Error(`expected rank >= ${n}, got ${v} ${shapeStr(v.shape)}`);
}
