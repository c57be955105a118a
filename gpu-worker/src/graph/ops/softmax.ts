import type { OpDef, Value } from '../builder.ts';
import { normAxis } from '../dims.ts';
import { mul, sub } from './arith.ts';
import { floatDtype } from './check.ts';
import { reduceSum } from './reduce.ts';
import { exp } from './unary.ts';

function softmaxInfer([x]: readonly Value[], attrs: Record<string, unknown>) {
  floatDtype(x!);
  normAxis(attrs.axis as number, x!.rank, `softmax ${x}`);
  return [{ dtype: x!.dtype, shape: x!.shape }];
}

// y = softmax(x):     dx = y * (g - sum(g * y))
export const SOFTMAX: OpDef = {
  type: 'Softmax',
  infer: softmaxInfer,
  vjp: ({ grads: [g], outputs: [y], attrs }) => [
    mul(y!, sub(g!, reduceSum(mul(g!, y!), [attrs.axis as number]))),
  ],
};

// y = log_softmax(x): dx = g - exp(y) * sum(g)
export const LOG_SOFTMAX: OpDef = {
  type: 'LogSoftmax',
  infer: softmaxInfer,
  vjp: ({ grads: [g], outputs: [y], attrs }) => [
    sub(g!, mul(exp(y!), reduceSum(g!, [attrs.axis as number]))),
  ],
};

export function softmax(x: Value, axis = -1, name?: string): Value {
  return x.graph.op(SOFTMAX, [x], { axis }, { name });
}

export function logSoftmax(x: Value, axis = -1, name?: string): Value {
  return x.graph.op(LOG_SOFTMAX, [x], { axis }, { name });
}
