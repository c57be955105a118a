import type { OpDef, Value } from '../builder.ts';
import { broadcastShapes } from '../dims.ts';
import { div, mul, neg, scale, sub } from './arith.ts';
import { broadcast, floatDtype } from './check.ts';

// Elementwise functions. Each rule writes dy/dx with ordinary ops, reusing the output y where
// the derivative is a function of it (exp, sqrt, tanh, sigmoid, reciprocal).

function unary(type: string, vjp: OpDef['vjp']): OpDef {
  return { type, infer: ([x]) => [{ dtype: floatDtype(x!), shape: x!.shape }], vjp };
}

const one = (v: Value) => v.graph.scalar(1, v.dtype);

export const EXP = unary('Exp', ({ grads: [g], outputs: [y] }) => [mul(g!, y!)]);
export const LOG = unary('Log', ({ grads: [g], inputs: [x] }) => [div(g!, x!)]);
// d sqrt(x) = 1 / (2 sqrt(x))
export const SQRT = unary('Sqrt', ({ grads: [g], outputs: [y] }) => [div(scale(g!, 0.5), y!)]);
// d (1/x) = -1/x^2 = -y^2
export const RECIPROCAL = unary('Reciprocal', ({ grads: [g], outputs: [y] }) => [neg(mul(g!, mul(y!, y!)))]);
// d tanh = 1 - y^2
export const TANH = unary('Tanh', ({ grads: [g], outputs: [y] }) => [mul(g!, sub(one(y!), mul(y!, y!)))]);
// d sigmoid = y (1 - y)
export const SIGMOID = unary('Sigmoid', ({ grads: [g], outputs: [y] }) => [
  mul(g!, mul(y!, sub(one(y!), y!))),
]);
// d erf(x) = 2/sqrt(pi) exp(-x^2)
export const ERF = unary('Erf', ({ grads: [g], inputs: [x] }) => [
  mul(g!, scale(exp(neg(mul(x!, x!))), 2 / Math.sqrt(Math.PI))),
]);
// d relu = [x > 0]
export const RELU = unary('Relu', ({ grads: [g], inputs: [x] }) => [
  where(greater(x!, zero(x!)), g!, zero(g!)),
]);

const zero = (v: Value) => v.graph.scalar(0, v.dtype);

/** |x|, without a gradient (where a magnitude is only reported). */
export const ABS: OpDef = { type: 'Abs', infer: ([x]) => [{ dtype: floatDtype(x!), shape: x!.shape }] };

/** x ** p for a constant p: d/dx = p x^(p-1). */
export const POW: OpDef = {
  type: 'Pow',
  infer: ([x, p]) => {
    floatDtype(x!);
    if (!p!.constData || p!.shape.length !== 0)
      throw new Error(`pow ${x}: the exponent must be a scalar constant`);
    return [{ dtype: x!.dtype, shape: x!.shape }];
  },
  vjp: ({ grads: [g], inputs: [x, p], needs }) => {
    const e = Number(p!.constData![0]);
    if (!needs[0]) return [undefined, undefined];
    const d = e === 2 ? scale(x!, 2) : scale(pow(x!, e - 1), e);
    return [mul(g!, d), undefined];
  },
};

export function exp(x: Value, name?: string): Value {
  return x.graph.op(EXP, [x], {}, { name });
}
export function log(x: Value, name?: string): Value {
  return x.graph.op(LOG, [x], {}, { name });
}
export function sqrt(x: Value, name?: string): Value {
  return x.graph.op(SQRT, [x], {}, { name });
}
export function reciprocal(x: Value, name?: string): Value {
  return x.graph.op(RECIPROCAL, [x], {}, { name });
}
export function tanh(x: Value, name?: string): Value {
  return x.graph.op(TANH, [x], {}, { name });
}
export function sigmoid(x: Value, name?: string): Value {
  return x.graph.op(SIGMOID, [x], {}, { name });
}
export function erf(x: Value, name?: string): Value {
  return x.graph.op(ERF, [x], {}, { name });
}
export function relu(x: Value, name?: string): Value {
  return x.graph.op(RELU, [x], {}, { name });
}
export function abs(x: Value, name?: string): Value {
  return x.graph.op(ABS, [x], {}, { name });
}
export function pow(x: Value, p: number, name?: string): Value {
  return x.graph.op(POW, [x, x.graph.scalar(p, x.dtype)], {}, { name });
}

// Comparisons give bool tensors and stop gradients.
function compare(type: string): OpDef {
  return {
    type,
    infer: ([a, b]) => {
      if (a!.dtype !== b!.dtype) throw new Error(`dtype clash: ${a} vs ${b}`);
      return [{ dtype: 'bool', shape: broadcast(a!, b!) }];
    },
  };
}
export const GREATER = compare('Greater');
export const LESS = compare('Less');
export const EQUAL = compare('Equal');

export function greater(a: Value, b: Value): Value {
  return a.graph.op(GREATER, [a, b]);
}
export function less(a: Value, b: Value): Value {
  return a.graph.op(LESS, [a, b]);
}
export function equal(a: Value, b: Value): Value {
  return a.graph.op(EQUAL, [a, b]);
}

/** cond ? a : b, broadcasting all three; the gradient goes to the chosen side. */
export const WHERE: OpDef = {
  type: 'Where',
  infer: ([c, a, b]) => {
    if (c!.dtype !== 'bool') throw new Error(`where: condition ${c} must be bool`);
    if (a!.dtype !== b!.dtype) throw new Error(`dtype clash: ${a} vs ${b}`);
    const ab = broadcastShapes(a!.shape, b!.shape);
    const out = ab && broadcastShapes(c!.shape, ab);
    if (!out) throw new Error(`shape mismatch: ${c}, ${a} and ${b} do not broadcast`);
    return [{ dtype: a!.dtype, shape: out }];
  },
  vjp: ({ grads: [g], inputs: [c], needs }) => {
    const z = zero(g!);
    return [undefined, needs[1] ? where(c!, g!, z) : undefined, needs[2] ? where(c!, z, g!) : undefined];
  },
};

export function where(cond: Value, a: Value, b: Value, name?: string): Value {
  return cond.graph.op(WHERE, [cond, a, b], {}, { name });
}
