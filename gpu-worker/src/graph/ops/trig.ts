import type { OpDef, Value } from '../builder.ts';
import { mul, neg } from './arith.ts';
import { floatDtype } from './check.ts';

// Sine and cosine (rotary tables); each derivative is the other function.

export const SIN: OpDef = {
  type: 'Sin',
  infer: ([x]) => [{ dtype: floatDtype(x!), shape: x!.shape }],
  vjp: ({ grads: [g], inputs: [x] }) => [mul(g!, cos(x!))],
};

export const COS: OpDef = {
  type: 'Cos',
  infer: ([x]) => [{ dtype: floatDtype(x!), shape: x!.shape }],
  vjp: ({ grads: [g], inputs: [x] }) => [neg(mul(g!, sin(x!)))],
};

export function sin(x: Value, name?: string): Value {
  return x.graph.op(SIN, [x], {}, { name });
}

export function cos(x: Value, name?: string): Value {
  return x.graph.op(COS, [x], {}, { name });
}
