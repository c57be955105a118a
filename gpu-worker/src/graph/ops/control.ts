import { type Graph, GraphError, type OpDef, type Value } from '../builder.ts';
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
