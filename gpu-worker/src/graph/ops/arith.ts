import type { OpDef, Value } from '../builder.ts';
import { broadcast, floatDtype, sameDtype } from './check.ts';

// Binary arithmetic with numpy broadcasting. Rules return gradients in the output's broadcast
// shape; the autodiff driver sums them back to each input's shape.

function binary(type: string, vjp: OpDef['vjp']): OpDef {
  return {
    type,
    infer: ([a, b]) => [{ dtype: sameDtype([a!, b!]), shape: broadcast(a!, b!) }],
    vjp,
  };
}

export const ADD = binary('Add', ({ grads: [g] }) => [g, g]);
export const SUB = binary('Sub', ({ grads: [g], needs }) => [g, needs[1] ? neg(g!) : undefined]);
export const MUL = binary('Mul', ({ grads: [g], inputs: [a, b], needs }) => [
  needs[0] ? mul(g!, b!) : undefined,
  needs[1] ? mul(g!, a!) : undefined,
]);
// d(a/b)/da = 1/b; d(a/b)/db = -(a/b)/b = -y/b
export const DIV = binary('Div', ({ grads: [g], inputs: [, b], outputs: [y], needs }) => [
  needs[0] ? div(g!, b!) : undefined,
  needs[1] ? neg(div(mul(g!, y!), b!)) : undefined,
]);

export const NEG: OpDef = {
  type: 'Neg',
  infer: ([x]) => [{ dtype: floatDtype(x!), shape: x!.shape }],
  vjp: ({ grads: [g] }) => [neg(g!)],
};

export function add(a: Value, b: Value, name?: string): Value {
  return a.graph.op(ADD, [a, b], {}, { name });
}
export function sub(a: Value, b: Value, name?: string): Value {
  return a.graph.op(SUB, [a, b], {}, { name });
}
export function mul(a: Value, b: Value, name?: string): Value {
  return a.graph.op(MUL, [a, b], {}, { name });
}
export function div(a: Value, b: Value, name?: string): Value {
  return a.graph.op(DIV, [a, b], {}, { name });
}
export function neg(x: Value, name?: string): Value {
  return x.graph.op(NEG, [x], {}, { name });
}

/** x * c for a number c, as a constant of x's dtype. */
export function scale(x: Value, c: number, name?: string): Value {
  return mul(x, x.graph.scalar(c, x.dtype), name);
}

/** x + c for a number c. */
export function addScalar(x: Value, c: number, name?: string): Value {
  return add(x, x.graph.scalar(c, x.dtype), name);
}
