import { type Graph, GraphError, isFloat, type Node, type OpDef, Value } from './builder.ts';
import { dimEq, shapeEq, shapeStr } from './dims.ts';
import { add } from './ops/arith.ts';
import { reduceSum } from './ops/reduce.ts';
import { expandAs, RESHAPE, reshapeAs, shapeOf } from './ops/shape.ts';

/**
 * Reverse-mode autodiff over a builder graph: the cross-cutting rules live here, each op's own
 * rule lives next to its forward (`OpDef.vjp`).
 *
 *   1. forward sweep: which values depend on `wrt` (only those can carry gradients)
 *   2. backward sweep: which of them reach `loss` (the rest is pruned, no nodes emitted)
 *   3. reverse construction order: call each live node's vjp, sum fan-out, undo broadcasts
 */

/** Identity that blocks gradients: what flows through it is treated as a constant. */
export const STOP_GRADIENT: OpDef = {
  type: 'Identity',
  infer: ([x]) => [{ dtype: x!.dtype, shape: x!.shape }],
};

export function stopGradient(x: Value): Value {
  return x.graph.op(STOP_GRADIENT, [x], {}, { name: 'StopGradient' });
}

/**
 * y with a hand-written gradient: autodiff does not look into how y was computed; `rule(gy)`
 * gives the gradients of `deps` instead. For computations cheaper to redo in the backward than
 * to keep (a chunked loss recomputes each chunk's logits rather than storing all of them).
 *
 * The rule also receives the deps and y as the node holds them when the backward is built: a rule
 * that uses those (not the values it closed over) still works after its graph has been inlined
 * into another one (the QLoRA step inlines the backbone's).
 */
export function customGrad(
  y: Value,
  deps: readonly Value[],
  rule: (gy: Value, deps: readonly Value[], y: Value) => (Value | undefined)[],
): Value {
  const op = passThrough(({ grads, inputs, outputs }) => {
    const out = rule(grads[0]!, inputs.slice(1), outputs[0]!);
    if (out.length !== deps.length) {
      throw new GraphError(`customGrad: the rule gave ${out.length} gradients for ${deps.length} inputs`);
    }
    return [undefined, ...out];
  });
  return y.graph.op(op, [stopGradient(y), ...deps], {}, { name: 'CustomGrad' });
}

/**
 * The op under customGrad and recompute: ONNX sees Identity of its first input (y behind a
 * stop-gradient); the other inputs exist for autodiff alone, which asks `vjp` for their gradients.
 */
function passThrough(vjp: NonNullable<OpDef['vjp']>): OpDef {
  return { type: 'Identity', onnxInputs: 1, infer: ([v]) => [{ dtype: v!.dtype, shape: v!.shape }], vjp };
}

export function zerosLike(x: Value): Value {
  return expandAs(x.graph.scalar(0, x.dtype), x);
}

export function grad(loss: Value, wrt: readonly Value[]): Value[] {
  if (loss.shape.length !== 0) throw new GraphError(`grad: loss ${loss} must be a scalar (shape [])`);
  if (!isFloat(loss.dtype)) throw new GraphError(`grad: loss ${loss} is not floating point`);
  return backward(loss, loss.graph.scalar(1, loss.dtype), wrt);
}

/**
 * fn(x), differentiated by running fn again in the backward (activation checkpointing,
 * https://arxiv.org/abs/1604.06174): the step keeps x for the backward, not what fn computes from
 * it. Worth it where fn is cheap against what it keeps (a narrow side-net block keeps ~20 tensors
 * of its own width per token). Every float value fn reads besides x (its weights, rotary tables)
 * gets its gradient through the recomputation, so fn may close over them; fn must build the same
 * computation when called again.
 *
 * The recomputation starts from x reshaped to the shape of y's incoming gradient (y has x's
 * shape), read at run time: that data dependency keeps onnxruntime from merging it back into the
 * forward (common subexpression elimination) and from running it before the backward gets there.
 */
export function recompute(x: Value, fn: (x: Value) => Value): Value {
  const g = x.graph;
  const first = g.nodes.length;
  const y = fn(x);
  if (!shapeEq(x.shape, y.shape) || x.dtype !== y.dtype) {
    throw new GraphError(`recompute: ${y} must have the shape and dtype of its input ${x}`);
  }
  const made = new Set(g.nodes.slice(first).flatMap((n) => n.outputs));
  const read = new Set(g.nodes.slice(first).flatMap((n) => n.inputs));
  const captured = [...read].filter((v) => v !== x && !made.has(v) && isFloat(v.dtype));
  const op = passThrough(({ grads: [gy], inputs: [, x2, ...captured2], needs }) => {
    const tied = g.op(RESHAPE, [x2!, shapeOf(gy!)], {}, { name: 'AfterGrad', hints: [x.shape] });
    const wanted = captured2.filter((_, i) => needs[i + 2]);
    const [dx, ...dWanted] = backward(fn(tied), gy!, [tied, ...wanted]);
    const byValue = new Map(wanted.map((v, i) => [v, dWanted[i]!]));
    return [undefined, needs[1] ? dx : undefined, ...captured2.map((v) => byValue.get(v!))];
  });
  return g.op(op, [stopGradient(y), x, ...captured], {}, { name: 'Recompute' });
}

/** Gradients of `wrt` given `y`'s gradient `gy`: the sweep under grad and recompute. */
function backward(y: Value, gy: Value, wrt: readonly Value[]): Value[] {
  const g = y.graph;
  for (const w of wrt) {
    if (w.graph !== g) throw new GraphError(`grad: unknown input ${w} (it belongs to another graph)`);
    if (!isFloat(w.dtype)) throw new GraphError(`grad: cannot differentiate with respect to ${w}`);
  }

  // 1. values that depend on wrt through differentiable ops
  const depends = new Set<Value>(wrt);
  for (const node of g.nodes) {
    if (!node.op.vjp) continue;
    if (node.inputs.some((v) => depends.has(v)))
      for (const o of node.outputs) if (isFloat(o.dtype)) depends.add(o);
  }
  // 2. of those, the ones on a path to y
  const reaches = new Set<Value>([y]);
  const live: Node[] = [];
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const node = g.nodes[i]!;
    if (!node.op.vjp || !node.outputs.some((o) => reaches.has(o) && depends.has(o))) continue;
    live.push(node);
    for (const v of node.inputs) if (depends.has(v)) reaches.add(v);
  }

  // 3. reverse sweep (live is already in reverse construction order)
  const grads = new Map<Value, Value>([[y, gy]]);
  for (const node of live) {
    const outGrads = node.outputs.map((o) => grads.get(o));
    if (outGrads.every((x) => x === undefined)) continue;
    const needs = node.inputs.map((v) => depends.has(v) && reaches.has(v) && isFloat(v.dtype));
    if (!needs.some(Boolean)) continue; // a wrt value's own producer: nothing to pass back
    const inGrads = atPath(g, `/grad${node.name}`, () =>
      node.op.vjp!({
        node,
        inputs: node.inputs,
        outputs: node.outputs,
        attrs: node.attrs,
        grads: node.outputs.map((o, i) => outGrads[i] ?? zerosLike(o)),
        needs,
      }),
    );
    node.inputs.forEach((input, i) => {
      const gi = inGrads[i];
      if (!needs[i] || gi === undefined) return;
      const fitted = atPath(g, `/grad${node.name}`, () => unbroadcast(gi, input, node));
      const prev = grads.get(input);
      grads.set(input, prev ? atPath(g, `/grad${node.name}`, () => add(prev, fitted, 'Accumulate')) : fitted);
    });
  }
  return wrt.map((w) => grads.get(w) ?? zerosLike(w));
}

/** Sum a gradient over the axes its input was broadcast along, then give it the input's shape. */
function unbroadcast(gi: Value, input: Value, node: Node): Value {
  if (!(gi instanceof Value)) throw new GraphError(`${node.name}: vjp returned a non-value for ${input}`);
  if (gi.dtype !== input.dtype) {
    throw new GraphError(`${node.name}: vjp returned ${gi} for ${input}: dtype differs`);
  }
  if (shapeEq(gi.shape, input.shape)) return gi;
  const lead = gi.rank - input.rank;
  if (lead < 0) throw new GraphError(`${node.name}: vjp returned ${gi}, lower rank than ${input}`);
  const axes: number[] = [];
  for (let i = 0; i < gi.rank; i++) {
    const di = i < lead ? undefined : input.shape[i - lead]!;
    if (di === undefined || (di === 1 && gi.shape[i] !== 1)) axes.push(i);
    else if (!dimEq(di, gi.shape[i]!)) {
      throw new GraphError(
        `${node.name}: vjp returned ${shapeStr(gi.shape)} for ${input}, not a broadcast of ${shapeStr(input.shape)}`,
      );
    }
  }
  const summed = axes.length ? reduceSum(gi, axes) : gi;
  return shapeEq(summed.shape, input.shape) ? summed : reshapeAs(summed, input);
}

function atPath<T>(g: Graph, path: string, fn: () => T): T {
  return g.withPath(path, fn);
}
