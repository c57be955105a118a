import type { OpDef, Value } from '../builder.ts';
import { normAxis } from '../dims.ts';
import { div, mul, scale } from './arith.ts';
import { cast } from './cast.ts';
import { floatDtype } from './check.ts';
import { expandAs, sizeOf, unsqueeze } from './shape.ts';

// Reductions over constant axes (an int64 input, as opset 18 wants for every Reduce*).

function reducedShape(x: Value, axesValue: Value | undefined, keepdims: boolean) {
  floatDtype(x);
  const axes = axesValue
    ? Array.from(axesValue.constData!, (a) => normAxis(Number(a), x.rank, `reduce ${x}`))
    : x.shape.map((_, i) => i);
  const shape = keepdims
    ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d))
    : x.shape.filter((_, i) => !axes.includes(i));
  return { axes, shape };
}

/** The gradient of a reduction, brought back to the reduced axes as size-1 dims. */
function keepDims(g: Value, x: Value, axesValue: Value | undefined, keepdims: boolean): Value {
  if (keepdims) return g;
  const { axes } = reducedShape(x, axesValue, true);
  return axes.length === x.rank ? g : unsqueeze(g, axes);
}

export const REDUCE_SUM: OpDef = {
  type: 'ReduceSum',
  infer: ([x, axes], attrs) => [
    { dtype: x!.dtype, shape: reducedShape(x!, axes, attrs.keepdims !== 0).shape },
  ],
  vjp: ({ inputs: [x, axes], grads: [g], attrs }) => [
    expandAs(keepDims(g!, x!, axes, attrs.keepdims !== 0), x!),
  ],
};

export const REDUCE_MEAN: OpDef = {
  type: 'ReduceMean',
  infer: REDUCE_SUM.infer,
  // d mean / dx = 1/n for each reduced element; n = size(x) / size(y), known at run time.
  vjp: ({ inputs: [x, axes], outputs: [y], grads: [g], attrs }) => {
    const n = div(cast(sizeOf(x!), x!.dtype), cast(sizeOf(y!), x!.dtype));
    return [expandAs(div(keepDims(g!, x!, axes, attrs.keepdims !== 0), n), x!)];
  },
};

// sum(x²) in one pass with no x² temporary: d/dx = 2 x g
export const REDUCE_SUM_SQUARE: OpDef = {
  type: 'ReduceSumSquare',
  infer: REDUCE_SUM.infer,
  vjp: ({ inputs: [x, axes], grads: [g], attrs }) => [
    mul(expandAs(keepDims(g!, x!, axes, attrs.keepdims !== 0), x!), scale(x!, 2)),
  ],
};

export interface ReduceOptions {
  keepdims?: boolean;
  name?: string;
}

function reduce(op: OpDef, x: Value, axes: readonly number[] | undefined, opts: ReduceOptions): Value {
  const inputs = axes ? [x, x.graph.vector(axes)] : [x];
  return x.graph.op(op, inputs, { keepdims: opts.keepdims === false ? 0 : 1 }, { name: opts.name });
}

/** Sum over `axes` (all when omitted); keeps the reduced dims unless `keepdims: false`. */
export function reduceSum(x: Value, axes?: readonly number[], opts: ReduceOptions = {}): Value {
  return reduce(REDUCE_SUM, x, axes, opts);
}

export function reduceSumSquare(x: Value, axes?: readonly number[], opts: ReduceOptions = {}): Value {
  return reduce(REDUCE_SUM_SQUARE, x, axes, opts);
}

export function reduceMean(x: Value, axes?: readonly number[], opts: ReduceOptions = {}): Value {
  return reduce(REDUCE_MEAN, x, axes, opts);
}

export const REDUCE_MAX: OpDef = { type: 'ReduceMax', infer: REDUCE_SUM.infer };

/** Maximum over `axes` (all when omitted). No gradient. */
export function reduceMax(x: Value, axes?: readonly number[], opts: ReduceOptions = {}): Value {
  return reduce(REDUCE_MAX, x, axes, opts);
}
