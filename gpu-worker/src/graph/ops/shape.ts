import type { OpDef, Value } from '../builder.ts';
import {
  broadcastShapes,
  type Dim,
  dimDiv,
  dimEq,
  dimProduct,
  isStatic,
  normAxis,
  type Shape,
  shapeStr,
} from '../dims.ts';
import { add, mul, sub } from './arith.ts';
import { cast } from './cast.ts';
import { broadcast } from './check.ts';

// Shape ops. Their shape arguments become int64 constant inputs, as ONNX wants them.

const INT_MAX = 2 ** 53 - 1;

/** Runtime shape of x (int64 [rank]), or dims [start, end) of it. */
export const SHAPE: OpDef = {
  type: 'Shape',
  infer: ([x], attrs) => {
    const start = normAxis((attrs.start as number | undefined) ?? 0, x!.rank + 1, 'Shape start');
    const end = attrs.end === undefined ? x!.rank : normAxis(attrs.end as number, x!.rank + 1, 'Shape end');
    return [{ dtype: 'int64', shape: [end - start] }];
  },
};

export function shapeOf(x: Value, start?: number, end?: number): Value {
  const attrs: Record<string, number> = {};
  if (start !== undefined) attrs.start = start;
  if (end !== undefined) attrs.end = end;
  return x.graph.op(SHAPE, [x], attrs);
}

/**
 * Dim a of x as an int64 (1) tensor, without reading x where possible: a static dim is a constant,
 * a symbolic one is read off a graph input declaring the same symbol. A backward that needs only
 * a forward value's shape then does not keep that value alive until it runs.
 */
export function dimOf(x: Value, a: number): Value {
  const g = x.graph;
  const d = x.shape[a]!;
  if (isStatic(d)) return g.vector([d]);
  let coef = 1;
  let acc: Value | undefined;
  for (const f of d.split('*')) {
    if (/^\d+$/.test(f)) {
      coef *= Number(f);
      continue;
    }
    const input = g.inputs.find((v) => v.shape.includes(f));
    if (!input) return shapeOf(x, a, a + 1);
    const axis = input.shape.indexOf(f);
    const v = shapeOf(input, axis, axis + 1);
    acc = acc ? mul(acc, v) : v;
  }
  return coef === 1 ? acc! : mul(acc!, g.vector([coef]));
}

/** x's shape as an int64 tensor, through dimOf: read off graph inputs rather than x where it can. */
export function runtimeShape(x: Value): Value {
  if (x.shape.every(isStatic)) return x.graph.vector(x.shape as number[]);
  return concat(
    x.shape.map((_, a) => dimOf(x, a)),
    0,
  );
}

export const SIZE: OpDef = { type: 'Size', infer: () => [{ dtype: 'int64', shape: [] }] };

/** Number of elements of x as an int64 scalar at run time. */
export function sizeOf(x: Value): Value {
  return x.graph.op(SIZE, [x]);
}

/**
 * x, read only once every one of `deps` has been computed: x reshaped to its own shape (an alias,
 * no copy), the target shape plus 0 x each dep's first element. onnxruntime runs nodes in a
 * depth-first order back from the graph's outputs, which can leave a branch whose values only
 * leave the graph (a tap) until the end while its input stays alive; reading x through this puts
 * the branch first in any order. It reads elements, not shapes: onnxruntime ran a Size of a Cast's
 * output before the Cast itself.
 */
export function after(x: Value, deps: readonly Value[]): Value {
  const g = x.graph;
  let target = runtimeShape(x);
  for (const dep of deps) {
    const axes = dep.shape.map((_, a) => a);
    const first = axes.length
      ? slice(
          dep,
          axes.map(() => 0),
          axes.map(() => 1),
          axes,
        ) // (1, ..., 1), dep's first element
      : dep;
    target = add(target, mul(cast(reshape(first, [1]), 'int64'), g.vector([0])));
  }
  return g.op(RESHAPE, [x, target], {}, { hints: [x.shape] });
}

/** ONNX Reshape: `spec` entries are sizes, 0 (copy this axis) or -1 (infer one axis). */
export const RESHAPE: OpDef = {
  type: 'Reshape',
  infer: ([x, shape], _attrs, hints) => {
    const spec = shape!.constData;
    if (!spec) return [{ dtype: x!.dtype, shape: needHint(hints, `reshape ${x}`) }];
    const out: (Dim | undefined)[] = Array.from(spec, (s, i) => {
      const n = Number(s);
      if (n === 0) {
        if (i >= x!.rank)
          throw new Error(`reshape ${x} to [${Array.from(spec).join(', ')}]: no axis ${i} to copy`);
        return x!.shape[i]!;
      }
      return n === -1 ? undefined : n;
    });
    const known = out.filter((d): d is Dim => d !== undefined);
    const holes = out.length - known.length;
    if (holes > 1) throw new Error(`reshape ${x}: more than one -1 in [${Array.from(spec).join(', ')}]`);
    const total = dimProduct(x!.shape);
    if (holes === 1) {
      const rest = dimDiv(total, dimProduct(known));
      if (rest === undefined)
        throw new Error(`shape mismatch: cannot reshape ${x} to [${Array.from(spec).join(', ')}]`);
      return [{ dtype: x!.dtype, shape: out.map((d) => d ?? rest) }];
    }
    if (!dimEq(total, dimProduct(known))) {
      throw new Error(`shape mismatch: cannot reshape ${x} to ${shapeStr(known)}`);
    }
    return [{ dtype: x!.dtype, shape: known }];
  },
  vjp: ({ grads: [g], inputs: [x] }) => [reshapeAs(g!, x!)],
};

function needHint(hints: readonly Shape[] | undefined, what: string, i = 0): Shape {
  const h = hints?.[i];
  if (!h) throw new Error(`${what}: the target shape is a run-time tensor and no symbolic shape was given`);
  return h;
}

export function reshape(x: Value, spec: readonly number[], name?: string): Value {
  return x.graph.op(RESHAPE, [x, x.graph.vector(spec)], {}, { name });
}

/** Reshape x to ref's shape (known only at run time when ref's shape is symbolic). */
export function reshapeAs(x: Value, ref: Value): Value {
  if (ref.shape.every(isStatic)) return reshape(x, ref.shape as number[]);
  return x.graph.op(RESHAPE, [x, runtimeShape(ref)], {}, { hints: [ref.shape] });
}

export const TRANSPOSE: OpDef = {
  type: 'Transpose',
  infer: ([x], { perm }) => {
    const p = perm as number[];
    if (p.length !== x!.rank || [...p].sort().some((v, i) => v !== i)) {
      throw new Error(`transpose ${x}: perm [${p.join(', ')}] is not a permutation of its ${x!.rank} axes`);
    }
    return [{ dtype: x!.dtype, shape: p.map((i) => x!.shape[i]!) }];
  },
  vjp: ({ grads: [g], attrs }) => {
    const p = attrs.perm as number[];
    const inv = p.map((_, i) => p.indexOf(i));
    return [transpose(g!, inv)];
  },
};

export function transpose(x: Value, perm: readonly number[], name?: string): Value {
  return x.graph.op(TRANSPOSE, [x], { perm: [...perm] }, { name });
}

/** Broadcast x to `shape` (an int64 shape tensor); gradients sum back in the driver. */
export const EXPAND: OpDef = {
  type: 'Expand',
  infer: ([x, shape], _attrs, hints) => {
    const target = shape!.constData ? Array.from(shape!.constData, Number) : needHint(hints, `expand ${x}`);
    const out = broadcastShapes(x!.shape, target);
    if (!out) throw new Error(`shape mismatch: cannot expand ${x} to ${shapeStr(target)}`);
    return [{ dtype: x!.dtype, shape: out }];
  },
  vjp: ({ grads: [g] }) => [g],
};

export function expand(x: Value, shape: readonly number[]): Value {
  return x.graph.op(EXPAND, [x, x.graph.vector(shape)]);
}

/** Broadcast x to ref's shape. */
export function expandAs(x: Value, ref: Value): Value {
  if (ref.shape.every(isStatic)) return expand(x, ref.shape as number[]);
  return x.graph.op(EXPAND, [x, runtimeShape(ref)], {}, { hints: [ref.shape] });
}

export const UNSQUEEZE: OpDef = {
  type: 'Unsqueeze',
  infer: ([x, axes]) => {
    const rank = x!.rank + axes!.constData!.length;
    const ax = Array.from(axes!.constData!, (a) => normAxis(Number(a), rank, `unsqueeze ${x}`));
    const out: Dim[] = [];
    let src = 0;
    for (let i = 0; i < rank; i++) out.push(ax.includes(i) ? 1 : x!.shape[src++]!);
    return [{ dtype: x!.dtype, shape: out }];
  },
  vjp: ({ grads: [g], inputs: [, axes] }) => [squeeze(g!, Array.from(axes!.constData!, Number))],
};

export const SQUEEZE: OpDef = {
  type: 'Squeeze',
  infer: ([x, axes]) => {
    const ax = Array.from(axes!.constData!, (a) => normAxis(Number(a), x!.rank, `squeeze ${x}`));
    for (const a of ax)
      if (x!.shape[a] !== 1) throw new Error(`squeeze ${x}: axis ${a} has size ${x!.shape[a]}, not 1`);
    return [{ dtype: x!.dtype, shape: x!.shape.filter((_, i) => !ax.includes(i)) }];
  },
  vjp: ({ grads: [g], inputs: [x, axes] }) => {
    const ax = Array.from(axes!.constData!, (a) => normAxis(Number(a), x!.rank, 'squeeze'));
    return [unsqueeze(g!, ax)];
  },
};

export function unsqueeze(x: Value, axes: readonly number[]): Value {
  return x.graph.op(UNSQUEEZE, [x, x.graph.vector(axes)]);
}

export function squeeze(x: Value, axes: readonly number[]): Value {
  return x.graph.op(SQUEEZE, [x, x.graph.vector(axes)]);
}

export const CONCAT: OpDef = {
  type: 'Concat',
  infer: (xs, { axis }) => {
    const first = xs[0]!;
    const a = normAxis(axis as number, first.rank, 'concat');
    let along: Dim = 0;
    for (const v of xs) {
      if (v.dtype !== first.dtype) throw new Error(`dtype clash: ${first} vs ${v}`);
      if (v.rank !== first.rank || v.shape.some((d, i) => i !== a && !dimEq(d, first.shape[i]!))) {
        throw new Error(`shape mismatch: cannot concat ${first} and ${v} along axis ${a}`);
      }
      along = isStatic(along) && isStatic(v.shape[a]!) ? along + (v.shape[a] as number) : `concat_${a}`;
    }
    if (!isStatic(along)) along = xs.map((v) => v.shape[a]).join('+');
    return [{ dtype: first.dtype, shape: first.shape.map((d, i) => (i === a ? along : d)) }];
  },
  vjp: ({ grads: [g], inputs, attrs }) => {
    const a = normAxis(attrs.axis as number, inputs[0]!.rank, 'concat');
    const sizes = inputs.map((v) => v.shape[a]!);
    if (sizes.every(isStatic)) return split(g!, a, sizes as number[]);
    const runtime = concat(
      inputs.map((v) => dimOf(v, a)),
      0,
    );
    return g!.graph.emit(SPLIT, [g!, runtime], { axis: a }, { hints: inputs.map((v) => v.shape) });
  },
};

export function concat(xs: readonly Value[], axis: number, name?: string): Value {
  return xs[0]!.graph.op(CONCAT, xs, { axis }, { name });
}

export const SPLIT: OpDef = {
  type: 'Split',
  infer: ([x, sizes], { axis }, hints) => {
    const a = normAxis(axis as number, x!.rank, `split ${x}`);
    if (!sizes!.constData) {
      if (!hints) throw new Error(`split ${x}: run-time sizes need symbolic output shapes`);
      return hints.map((shape) => ({ dtype: x!.dtype, shape }));
    }
    const parts = Array.from(sizes!.constData, Number);
    const total = parts.reduce((s, n) => s + n, 0);
    if (isStatic(x!.shape[a]!) && x!.shape[a] !== total) {
      throw new Error(`shape mismatch: split sizes [${parts.join(', ')}] do not add up to axis ${a} of ${x}`);
    }
    return parts.map((n) => ({ dtype: x!.dtype, shape: x!.shape.map((d, i) => (i === a ? n : d)) }));
  },
  vjp: ({ grads, attrs }) => [concat(grads, attrs.axis as number)],
};

export function split(x: Value, axis: number, sizes: readonly number[]): Value[] {
  return x.graph.emit(SPLIT, [x, x.graph.vector(sizes)], { axis });
}

/**
 * Slice with constant starts/ends (ends may exceed the axis: they clamp) and step 1.
 * Its gradient pads the incoming gradient back with zeros, with pads known at run time.
 */
export const SLICE: OpDef = {
  type: 'Slice',
  infer: ([x, starts, ends, axes]) => {
    const s = Array.from(starts!.constData!, Number);
    const e = Array.from(ends!.constData!, Number);
    const ax = Array.from(axes!.constData!, (a) => normAxis(Number(a), x!.rank, `slice ${x}`));
    const out = [...x!.shape];
    ax.forEach((a, i) => {
      const d = x!.shape[a]!;
      const start = s[i]!;
      const end = e[i]!;
      if (start < 0) throw new Error(`slice ${x}: negative start ${start} is not supported`);
      if (isStatic(d)) out[a] = Math.max(0, Math.min(end < 0 ? d + end : end, d) - Math.min(start, d));
      else if (start === 0 && end >= INT_MAX) out[a] = d;
      else if (end >= 0 && end < INT_MAX) out[a] = end - start;
      else out[a] = `${d}[${start}:${end}]`;
    });
    return [{ dtype: x!.dtype, shape: out }];
  },
  vjp: ({ grads: [g], inputs: [x, starts, ends, axes] }) => {
    const graph = x!.graph;
    const ax = Array.from(axes!.constData!, (a) => normAxis(Number(a), x!.rank, 'slice'));
    const s = Array.from(starts!.constData!, Number);
    const e = Array.from(ends!.constData!, Number);
    // pads = [before_0.., after_0..] for the sliced axes: before = start, after = dim - end (clamped)
    const befores = ax.map((_, i) => graph.vector([s[i]!]));
    const afters = ax.map((a, i) => {
      const dim = dimOf(x!, a);
      const end = e[i]! < 0 ? add(dim, graph.vector([e[i]!])) : minOf(dim, graph.vector([e[i]!]));
      return sub(dim, end);
    });
    const pads = concat([...befores, ...afters], 0);
    return [
      graph.op(
        PAD,
        [g!, pads, graph.scalar(0, g!.dtype), graph.vector(ax)],
        {},
        { name: 'SliceGrad', hints: [x!.shape] },
      ),
    ];
  },
};

export function slice(
  x: Value,
  starts: readonly number[],
  ends: readonly number[],
  axes: readonly number[],
): Value {
  const g = x.graph;
  const clamp = (v: number) => Math.min(v, INT_MAX);
  return g.op(SLICE, [x, g.vector(starts), g.vector(ends.map(clamp)), g.vector(axes)]);
}

export const MIN: OpDef = {
  type: 'Min',
  infer: ([a, b]) => [{ dtype: a!.dtype, shape: broadcast(a!, b!) }],
};

/** Elementwise minimum (integer shape arithmetic; no gradient). */
export function minOf(a: Value, b: Value): Value {
  return a.graph.op(MIN, [a, b]);
}

/** Constant zero padding back to a known shape (the gradient of Slice). */
export const PAD: OpDef = {
  type: 'Pad',
  infer: ([x], _attrs, hints) => [{ dtype: x!.dtype, shape: needHint(hints, `pad ${x}`) }],
};
