import { grad } from './autodiff.ts';
import { type DType, Graph, GraphError, type Value } from './builder.ts';
import type { Dim, Shape } from './dims.ts';
import { inPlaceProblems } from './in-place.ts';
import { add, div, mul } from './ops/arith.ts';
import { cast } from './ops/cast.ts';
import { type AdamWOptions, type AdamWUpdate, adamw, adamwOptions } from './optim.ts';

/**
 * Training steps as ONNX models: a pure map from (params, optimizer state, batch) to new ones.
 *
 *   step:  (params, m_*, v_*, step, lr, batch)                    -> (params', m', v', loss, grad_norm)
 *   grad:  (params, acc_*, batch, loss_weight)                    -> (acc', loss)
 *   apply: (params, m_*, v_*, acc_*, step, lr, micro_batches)     -> (params', m', v', grad_norm)
 *
 * Every output that replaces an input is named `<input>.next`; `layout.next` lists the pairs so a
 * runner can feed step k's outputs to step k+1 without knowing what they are.
 */

export type ParamDType = 'float32' | 'float64';

export interface ParamSpec {
  name: string;
  shape: readonly number[];
  dtype?: ParamDType;
}

export interface BatchSpec {
  name: string;
  dtype: DType;
  /** May use named dynamic dims (`batch`, `seq`). */
  shape: Shape;
}

/**
 * The scalar loss, or the loss with metrics: more scalars the models output beside it (named in
 * TrainStepSpec.metrics), which no gradient flows from.
 */
export type LossFn = (
  g: Graph,
  params: Record<string, Value>,
  batch: Record<string, Value>,
) => Value | { loss: Value; metrics: Record<string, Value> };

export interface TrainStepSpec {
  params: readonly ParamSpec[];
  batch: readonly BatchSpec[];
  /** A scalar float loss built from primitives; for gradient accumulation make it a mean over the batch. */
  loss: LossFn;
  optim?: Partial<AdamWOptions>;
  /** Names of the metrics the loss function returns (each an output `metric.<name>`). */
  metrics?: readonly string[];
  /** The element type of the `step` input. */
  stepDtype?: 'int64' | 'float32';
}

/** Plain data (JSON-safe) describing the models' inputs and outputs, for the runner. */
export interface TrainLayout {
  params: { name: string; shape: number[]; dtype: ParamDType; m: string; v: string; acc: string }[];
  batch: { name: string; dtype: DType; shape: Dim[] }[];
  stepDtype: 'int64' | 'float32';
  inputs: { step: string; lr: string; microBatches: string; lossWeight: string };
  outputs: { loss: string; gradNorm: string; metrics: Record<string, string> };
  /** State input -> the output carrying its next value (params, m, v, accumulators). */
  next: Record<string, string>;
  /**
   * Whether the models may write each next value into its input's buffer: every read of a state
   * input comes before the write of its next value in any order onnxruntime may run the nodes
   * (`inPlaceProblems`). Set by the builders; a runner then passes the state tensors as the
   * outputs' buffers, so a step ends with two copies of the state instead of three (onnxruntime's
   * own outputs are gone; onnxruntime-node's JS copies of them remain until dropped).
   */
  inPlace: boolean;
}

const SCALARS = {
  step: 'step',
  lr: 'lr',
  microBatches: 'micro_batches',
  lossWeight: 'loss_weight',
  loss: 'loss',
  gradNorm: 'grad_norm',
};

export const nextName = (input: string): string => `${input}.next`;

/** The layout for a spec, after checking every name and shape (all problems reported at once). */
export function trainLayout(spec: TrainStepSpec): TrainLayout {
  const bad: string[] = [];
  const params = spec.params.map((p) => {
    if (!p.shape.every((d) => Number.isInteger(d) && d > 0))
      bad.push(`param ${p.name}: shape [${p.shape.join(', ')}] must be static positive sizes`);
    const dtype = p.dtype ?? 'float32';
    if (dtype !== 'float32' && dtype !== 'float64') bad.push(`param ${p.name}: dtype ${dtype} is not float`);
    return {
      name: p.name,
      shape: [...p.shape],
      dtype,
      m: `m_${p.name}`,
      v: `v_${p.name}`,
      acc: `acc_${p.name}`,
    };
  });
  if (params.length === 0) bad.push('no params');
  const state = params.flatMap((p) => [p.name, p.m, p.v, p.acc]);
  const next = Object.fromEntries(state.map((n) => [n, nextName(n)]));
  const names = [
    ...state,
    ...Object.values(next),
    ...spec.batch.map((b) => b.name),
    ...Object.values(SCALARS),
  ];
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) bad.push(`name '${n}' is used twice`);
    seen.add(n);
  }
  if (bad.length) throw new GraphError(`train step: ${bad.join('; ')}`);
  return {
    params,
    batch: spec.batch.map((b) => ({ name: b.name, dtype: b.dtype, shape: [...b.shape] })),
    stepDtype: spec.stepDtype ?? 'int64',
    inputs: {
      step: SCALARS.step,
      lr: SCALARS.lr,
      microBatches: SCALARS.microBatches,
      lossWeight: SCALARS.lossWeight,
    },
    outputs: {
      loss: SCALARS.loss,
      gradNorm: SCALARS.gradNorm,
      metrics: Object.fromEntries((spec.metrics ?? []).map((m) => [m, `metric.${m}`])),
    },
    next,
    inPlace: false,
  };
}

type ParamValues = { name: string; param: Value }[];

function paramInputs(g: Graph, layout: TrainLayout): ParamValues {
  return layout.params.map((p) => ({ name: p.name, param: g.input(p.name, p.dtype, p.shape) }));
}

function stateInputs(g: Graph, layout: TrainLayout, which: 'm' | 'v' | 'acc'): Value[] {
  return layout.params.map((p) => g.input(p[which], p.dtype, p.shape));
}

function batchInputs(g: Graph, layout: TrainLayout): Record<string, Value> {
  return Object.fromEntries(layout.batch.map((b) => [b.name, g.input(b.name, b.dtype, b.shape)]));
}

/**
 * Forward and backward: the loss and d (weight x loss) / d param for every param (`weight`, a
 * float scalar, scales the gradients only; absent, it is 1).
 */
function lossAndGrads(
  g: Graph,
  spec: TrainStepSpec,
  params: ParamValues,
  batch: Record<string, Value>,
  weight?: Value,
) {
  const byName = Object.fromEntries(params.map((p) => [p.name, p.param]));
  const out = g.scope('loss', () => spec.loss(g, byName, batch));
  const { loss, metrics } = 'loss' in out ? out : { loss: out, metrics: {} };
  const wanted = spec.metrics ?? [];
  const given = Object.keys(metrics);
  if (given.length !== wanted.length || !wanted.every((m) => m in metrics))
    throw new GraphError(
      `train step: the loss gave metrics [${given.join(', ')}], the spec names [${wanted.join(', ')}]`,
    );
  const objective = weight ? mul(loss, cast(weight, loss.dtype), 'WeightedLoss') : loss;
  return {
    loss,
    metrics,
    grads: grad(
      objective,
      params.map((p) => p.param),
    ),
  };
}

function outputMetrics(g: Graph, layout: TrainLayout, metrics: Record<string, Value>): void {
  for (const [name, output] of Object.entries(layout.outputs.metrics)) g.output(metrics[name]!, output);
}

function outputUpdates(g: Graph, layout: TrainLayout, updates: AdamWUpdate[]): void {
  updates.forEach((u, i) => {
    const p = layout.params[i]!;
    g.output(u.param, layout.next[p.name]!);
    g.output(u.m, layout.next[p.m]!);
    g.output(u.v, layout.next[p.v]!);
  });
}

/** The one-model training step: forward, backward, clipping and AdamW. */
export function buildTrainStep(spec: TrainStepSpec): { graph: Graph; layout: TrainLayout } {
  const layout = trainLayout(spec);
  const optim = adamwOptions(spec.optim);
  const g = new Graph({ name: 'train_step' });
  const params = paramInputs(g, layout);
  const m = stateInputs(g, layout, 'm');
  const v = stateInputs(g, layout, 'v');
  const step = g.input(layout.inputs.step, layout.stepDtype, []);
  const lr = g.input(layout.inputs.lr, 'float32', []);
  const { loss, metrics, grads } = lossAndGrads(g, spec, params, batchInputs(g, layout));
  const slots = params.map((p, i) => ({ ...p, grad: grads[i]!, m: m[i]!, v: v[i]! }));
  const { updates, gradNorm } = g.scope('optim', () => adamw(slots, step, lr, optim, [loss]));
  outputUpdates(g, layout, updates);
  g.output(loss, layout.outputs.loss);
  g.output(gradNorm, layout.outputs.gradNorm);
  outputMetrics(g, layout, metrics);
  return { graph: g, layout: { ...layout, inPlace: inPlaceProblems(g, layout.next).length === 0 } };
}

/**
 * Gradient accumulation over micro-batches: `grad` adds each micro-batch's gradient, times its
 * `loss_weight`, to the accumulators; `apply` divides the sums by `micro_batches` (the weights'
 * total) and takes the AdamW step. With a loss that is a mean over a micro-batch's targets and
 * each weight that micro-batch's target count, the update is the gradient of the mean over all the
 * step's targets: one step on the whole batch, whatever the micro-batches' sizes (weights of 1
 * average the micro-batch means instead).
 */
export function buildGradAccumulation(spec: TrainStepSpec): {
  grad: Graph;
  apply: Graph;
  layout: TrainLayout;
} {
  const layout = trainLayout(spec);
  const optim = adamwOptions(spec.optim);

  const gg = new Graph({ name: 'train_grad' });
  const gParams = paramInputs(gg, layout);
  const acc = stateInputs(gg, layout, 'acc');
  const weight = gg.input(layout.inputs.lossWeight, 'float32', []);
  const { loss, metrics, grads } = lossAndGrads(gg, spec, gParams, batchInputs(gg, layout), weight);
  layout.params.forEach((p, i) => {
    const sum = gg.scope(`accumulate/${p.name}`, () => add(acc[i]!, grads[i]!));
    gg.output(sum, layout.next[p.acc]!);
  });
  gg.output(loss, layout.outputs.loss);
  outputMetrics(gg, layout, metrics);

  const ag = new Graph({ name: 'train_apply' });
  const aParams = paramInputs(ag, layout);
  const m = stateInputs(ag, layout, 'm');
  const v = stateInputs(ag, layout, 'v');
  const sums = stateInputs(ag, layout, 'acc');
  const step = ag.input(layout.inputs.step, layout.stepDtype, []);
  const lr = ag.input(layout.inputs.lr, 'float32', []);
  const count = ag.input(layout.inputs.microBatches, 'float32', []);
  const slots = aParams.map((p, i) => ({
    ...p,
    grad: ag.scope(`average/${p.name}`, () => div(sums[i]!, cast(count, p.param.dtype))),
    m: m[i]!,
    v: v[i]!,
  }));
  const { updates, gradNorm } = ag.scope('optim', () => adamw(slots, step, lr, optim));
  outputUpdates(ag, layout, updates);
  ag.output(gradNorm, layout.outputs.gradNorm);
  const inPlace = [gg, ag].every((graph) => inPlaceProblems(graph, layout.next).length === 0);
  return { grad: gg, apply: ag, layout: { ...layout, inPlace } };
}
