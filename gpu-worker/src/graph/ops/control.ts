import { Graph, GraphError, type OpDef, type Value } from '../builder.ts';
import type { Shape } from '../dims.ts';

// Control flow and run-time shaped helpers. None has a gradient: where a computation inside a
// body needs one, the caller writes it with customGrad (see side-net/loss.ts).

/**
 * ONNX Scan: runs `body` once per slice along axis 0 of each scan input, threading state.
 * body inputs:  (state_1..state_s, slice_1..slice_k)     values of the outer graph by name
 * body outputs: (state'_1..state'_s, out_1..out_m)       outs stacked along a new axis 0
 */
export const SCAN: OpDef = {
  type: 'Scan',
  infer: (inputs, attrs, hints) => {
    const body = (attrs.body as { subgraph: Graph }).subgraph;
    const states = inputs.length - (attrs.num_scan_inputs as number);
    if (body.inputs.length !== inputs.length) {
      throw new Error(`scan: body takes ${body.inputs.length} inputs, given ${inputs.length}`);
    }
    const outs = body.outputs.map((o, i) => {
      if (i < states) return { dtype: o.dtype, shape: inputs[i]!.shape };
      const h = hints?.[i - states];
      if (!h) throw new Error(`scan: give the shape of scan output ${i - states} (it stacks the iterations)`);
      return { dtype: o.dtype, shape: h };
    });
    return outs;
  },
};

export interface ScanSpec {
  body: Graph;
  states: readonly Value[];
  scans: readonly Value[];
  /** Shapes of the stacked scan outputs (iterations, ...per-iteration shape). */
  outShapes?: readonly Shape[];
  /** The axis each scan input is sliced along (default 0 for all). */
  inputAxes?: readonly number[];
  /** The axis each scan output stacks its iterations along (default 0 for all). */
  outputAxes?: readonly number[];
  name?: string;
}

export function scan(g: Graph, spec: ScanSpec): Value[] {
  if (spec.body.outputs.length < spec.states.length) {
    throw new GraphError(`scan: the body must output every state (${spec.states.length})`);
  }
  return g.emit(
    SCAN,
    [...spec.states, ...spec.scans],
    {
      body: { subgraph: spec.body },
      num_scan_inputs: spec.scans.length,
      ...(spec.inputAxes ? { scan_input_axes: [...spec.inputAxes] } : {}),
      ...(spec.outputAxes ? { scan_output_axes: [...spec.outputAxes] } : {}),
    },
    { name: spec.name ?? 'Scan', hints: spec.outShapes ?? [] },
  );
}

/** ONNX If: runs one of two branch graphs (no inputs; they read the enclosing graph's values). */
export const IF: OpDef = {
  type: 'If',
  infer: (_inputs, attrs, hints) => {
    const then = (attrs.then_branch as { subgraph: Graph }).subgraph;
    const other = (attrs.else_branch as { subgraph: Graph }).subgraph;
    if (then.outputs.length !== other.outputs.length) {
      throw new Error(`if: the branches give ${then.outputs.length} and ${other.outputs.length} outputs`);
    }
    return then.outputs.map((o, i) => {
      if (o.dtype !== other.outputs[i]!.dtype) {
        throw new Error(
          `if: output ${i} is ${o.dtype} in one branch, ${other.outputs[i]!.dtype} in the other`,
        );
      }
      return { dtype: o.dtype, shape: hints?.[i] ?? o.shape };
    });
  },
};

export interface IfSpec {
  /** The enclosing graph's values a branch reads are `b.outer(v)` inside it. */
  ifTrue: (b: Graph) => Value[];
  ifFalse: (b: Graph) => Value[];
  /** The outputs' shapes (symbolic where the branches differ); the then-branch's by default. */
  shapes?: readonly Shape[];
  name?: string;
}

/**
 * `cond` (a one-element bool) ? spec.ifTrue : spec.ifFalse, each built into a branch graph of its own.
 * No gradient: for inference graphs (one computation for a long prompt, another for one token).
 */
export function ifElse(g: Graph, cond: Value, spec: IfSpec): Value[] {
  const name = spec.name ?? 'If';
  const branch = (which: 'then' | 'else', fn: (b: Graph) => Value[]) => {
    const b = new Graph({ name: `${name}_${which}`, opsets: g.options.opsets });
    const scope = `${g.path === '/' ? '' : g.path}/${name}/${which}`;
    b.withPath(scope, () => {
      for (const [i, out] of fn(b).entries()) b.output(out, `${scope}/out_${i}`);
    });
    return b;
  };
  return g.emit(
    IF,
    [cond],
    {
      then_branch: { subgraph: branch('then', spec.ifTrue) },
      else_branch: { subgraph: branch('else', spec.ifFalse) },
    },
    { name, hints: spec.shapes ?? [] },
  );
}

/** Pad with run-time pads (int64 [2 * rank]: all begins, then all ends) and a constant. */
export const PAD_RUNTIME: OpDef = {
  type: 'Pad',
  infer: ([x], _attrs, hints) => {
    if (!hints?.[0]) throw new Error(`pad ${x}: give the padded symbolic shape`);
    return [{ dtype: x!.dtype, shape: hints[0] }];
  },
};

export function padRuntime(x: Value, pads: Value, value: Value, shape: Shape, name?: string): Value {
  return x.graph.op(PAD_RUNTIME, [x, pads, value], { mode: 'constant' }, { name, hints: [shape] });
}

/** Slice with run-time starts/ends (int64 [n]) on constant axes. */
export const SLICE_RUNTIME: OpDef = {
  type: 'Slice',
  infer: ([x], _attrs, hints) => {
    if (!hints?.[0]) throw new Error(`slice ${x}: give the sliced symbolic shape`);
    return [{ dtype: x!.dtype, shape: hints[0] }];
  },
};

export function sliceRuntime(
  x: Value,
  starts: Value,
  ends: Value,
  axes: readonly number[],
  shape: Shape,
): Value {
  return x.graph.op(SLICE_RUNTIME, [x, starts, ends, x.graph.vector(axes)], {}, { hints: [shape] });
}
