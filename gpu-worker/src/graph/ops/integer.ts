import type { OpDef, Value } from '../builder.ts';
import { type Dim, shapeStr } from '../dims.ts';
import { broadcast, sameDtype } from './check.ts';

// Integer and boolean ops for index arithmetic (position ranges, counter-based hashes, masks).
// None of them has a gradient: what they compute is an index or a mask, never a trained value.

function integerDtype(v: Value): void {
  if (v.dtype !== 'int64' && v.dtype !== 'int32') throw new Error(`expected an integer tensor, got ${v}`);
}

/** start, start + delta, ... below limit (scalars); `length` is the output's symbolic size. */
export const RANGE: OpDef = {
  type: 'Range',
  infer: ([start, limit, delta], _attrs, hints) => {
    for (const v of [start!, limit!, delta!]) {
      if (v.rank !== 0) throw new Error(`range: ${v} must be a scalar`);
    }
    const length = hints?.[0];
    if (length?.length !== 1) {
      throw new Error(
        `range: give the output length as a symbolic shape [n], got ${length && shapeStr(length)}`,
      );
    }
    return [{ dtype: sameDtype([start!, limit!, delta!]), shape: length }];
  },
};

export function range(start: Value, limit: Value, delta: Value, length: Dim): Value {
  return start.graph.op(RANGE, [start, limit, delta], {}, { hints: [[length]] });
}

/** Integer remainder with the divisor's sign (ONNX Mod, fmod=0): mod(-1, 2^32) = 2^32 - 1. */
export const MOD: OpDef = {
  type: 'Mod',
  infer: ([a, b]) => {
    integerDtype(a!);
    return [{ dtype: sameDtype([a!, b!]), shape: broadcast(a!, b!) }];
  },
};

export function mod(a: Value, b: Value, name?: string): Value {
  return a.graph.op(MOD, [a, b], { fmod: 0 }, { name });
}

export const BITWISE_XOR: OpDef = {
  type: 'BitwiseXor',
  infer: ([a, b]) => {
    integerDtype(a!);
    return [{ dtype: sameDtype([a!, b!]), shape: broadcast(a!, b!) }];
  },
};

export function bitwiseXor(a: Value, b: Value, name?: string): Value {
  return a.graph.op(BITWISE_XOR, [a, b], {}, { name });
}

function logical(type: string): OpDef {
  return {
    type,
    infer: ([a, b]) => {
      if (a!.dtype !== 'bool' || b!.dtype !== 'bool') throw new Error(`${type}: ${a} and ${b} must be bool`);
      return [{ dtype: 'bool', shape: broadcast(a!, b!) }];
    },
  };
}

export const LOGICAL_OR = logical('Or');
export const LOGICAL_AND = logical('And');

export const LOGICAL_NOT: OpDef = {
  type: 'Not',
  infer: ([a]) => {
    if (a!.dtype !== 'bool') throw new Error(`not: ${a} must be bool`);
    return [{ dtype: 'bool', shape: a!.shape }];
  },
};

export function logicalOr(a: Value, b: Value, name?: string): Value {
  return a.graph.op(LOGICAL_OR, [a, b], {}, { name });
}

export function logicalAnd(a: Value, b: Value, name?: string): Value {
  return a.graph.op(LOGICAL_AND, [a, b], {}, { name });
}

export function logicalNot(a: Value, name?: string): Value {
  return a.graph.op(LOGICAL_NOT, [a], {}, { name });
}
