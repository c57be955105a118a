import { GraphError, isFloat, type Value } from './builder.ts';
import { shapeEq } from './dims.ts';
import { add, div, mul, scale, sub } from './ops/arith.ts';
import { cast } from './ops/cast.ts';
import { reduceSumSquare } from './ops/reduce.ts';
import { after } from './ops/shape.ts';
import { exp, greater, sqrt, where } from './ops/unary.ts';

/**
 * AdamW emitted as graph ops, so the optimizer runs inside the training-step model.
 * Adam: https://arxiv.org/abs/1412.6980, decoupled weight decay: https://arxiv.org/abs/1711.05101.
 * The update follows torch.optim.AdamW (eps added after bias-correcting sqrt(v)).
 */
export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Clip the global gradient norm (all gradients together) to this; Infinity turns clipping off. */
  maxGradNorm: number;
  /** Which parameters get weight decay, by name; the default spares norms, gates and biases. */
  decay: (name: string) => boolean;
  /**
   * Each parameter's learning rate as a multiple of `lr`, by name (default 1 for all): a
   * per-group rate. Under Adam, k x lr on z is the same update as lr on alpha with z = k alpha
   * (the step size does not depend on the gradient's scale), so a gate sigmoid(alpha / T) at lr
   * is a gate sigmoid(z) at lr / T.
   */
  lrScale: (name: string) => number;
}

// Judged per path segment (split on `.` and `/`), so `mlp.gate_proj.weight` still decays.
const NORM = /norm|^ln(\d+|_\w*)?$/i; // input_layernorm, norm1, ln_f, ln2
const GATE = /^(side_|ladder_)?gates?\d*$/i; // gate, side_gate, gates; not w_gate (a projection)
const BIAS = /(^|_)bias$|^b\d*$/i; // bias, q_bias, b, b2

/** The default decay predicate: every parameter except normalisation gains, gates and biases. */
export function decaysByDefault(name: string): boolean {
  return !name.split(/[./]/).some((seg) => NORM.test(seg) || GATE.test(seg) || BIAS.test(seg));
}

export const ADAMW_DEFAULTS: AdamWOptions = {
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
  maxGradNorm: 1.0,
  decay: decaysByDefault,
  lrScale: () => 1,
};

export function adamwOptions(opts: Partial<AdamWOptions> = {}): AdamWOptions {
  const o = { ...ADAMW_DEFAULTS, ...opts } satisfies AdamWOptions;
  const bad: string[] = [];
  if (!(o.beta1 > 0 && o.beta1 < 1)) bad.push(`beta1 ${o.beta1} is not in (0, 1)`);
  if (!(o.beta2 > 0 && o.beta2 < 1)) bad.push(`beta2 ${o.beta2} is not in (0, 1)`);
  if (!(o.eps > 0)) bad.push(`eps ${o.eps} is not > 0`);
  if (!(o.weightDecay >= 0)) bad.push(`weightDecay ${o.weightDecay} is not >= 0`);
  if (!(o.maxGradNorm > 0))
    bad.push(`maxGradNorm ${o.maxGradNorm} is not > 0 (use Infinity for no clipping)`);
  if (bad.length) throw new GraphError(`adamw options: ${bad.join('; ')}`);
  return o;
}

/** One parameter's slot in the optimizer: its value, gradient and moments (all one shape). */
export interface AdamWSlot {
  name: string;
  param: Value;
  grad: Value;
  m: Value;
  v: Value;
}

export interface AdamWUpdate {
  name: string;
  param: Value;
  m: Value;
  v: Value;
}

/**
 * Global-norm clipping as in torch.nn.utils.clip_grad_norm_, returned as a coefficient so the
 * caller can fold it into scalars instead of rewriting every gradient:
 *
 *   g_i ──► ReduceSumSquare ─┐
 *   ...                      ├─► Σ ─► sqrt ─► norm (reported, float32 [])
 *   g_k ──► ReduceSumSquare ─┘          └──► coef = min(1, max / (norm + 1e-6))   (float64 [])
 *
 * The norm and coefficient are computed in float64 (scalars, so it costs nothing).
 */
export function globalNormClip(grads: readonly Value[], maxNorm: number): { coef: Value; norm: Value } {
  if (grads.length === 0) throw new GraphError('globalNormClip: no gradients');
  const g = grads[0]!.graph;
  return g.scope('clip', () => {
    // onnxruntime runs nodes in the post-order of a depth-first walk from the outputs that enters
    // each node's latest-built input first. The sum is built so that walk meets the gradients in
    // the order the backward produced them: each layer's weight gradients (and the activations
    // they read) are then done before the backward moves on to the layer below, not all held
    // until the end of the sweep. Summing in list order made it walk the whole backward chain
    // to the first parameter's gradient first: a 2k-token QLoRA step (d=1024, 16 layers) held
    // ~1 GB more at its peak, an LST side step ~115 MB (bench/memory).
    const built = new Map(g.nodes.map((n, i) => [n, i]));
    const at = (x: Value) => (x.producer ? (built.get(x.producer) ?? -1) : -1);
    let total: Value | undefined;
    for (const x of [...grads].sort((a, b) => at(b) - at(a))) {
      const square = cast(reduceSumSquare(x, undefined, { keepdims: false }), 'float64');
      total = total ? add(total, square) : square;
    }
    const norm64 = sqrt(total!);
    const norm = cast(norm64, 'float32');
    const one = g.scalar(1, 'float64');
    if (maxNorm === Number.POSITIVE_INFINITY) return { coef: one, norm };
    const ratio = div(g.scalar(maxNorm, 'float64'), add(norm64, g.scalar(1e-6, 'float64')));
    return { coef: where(greater(ratio, one), one, ratio, 'ClipCoef'), norm };
  });
}

/** The clipped gradients themselves, g_i * coef. */
export function clipByGlobalNorm(grads: readonly Value[], maxNorm: number): { grads: Value[]; norm: Value } {
  const { coef, norm } = globalNormClip(grads, maxNorm);
  return { grads: grads.map((x) => mul(x, cast(coef, x.dtype), 'Clip')), norm };
}

/**
 * One AdamW update of every slot. `step` is the 1-based update count (int64 or float scalar),
 * `lr` a float scalar; both are graph inputs so one model serves the whole schedule.
 *
 *   ĝ  = c g,  c = clip coefficient       (global norm over all slots)
 *   m' = β1 m + (1 - β1) ĝ
 *   v' = β2 v + (1 - β2) ĝ²
 *   p' = p (1 - lr wd) - (lr / bc1) m' / (sqrt(v') / sqrt(bc2) + eps),   bc_i = 1 - β_i^step
 *
 * Emitted with every scalar folded together, so each parameter costs the fewest passes over
 * its memory (the clip factor goes into (1 - β) c and (1 - β2) c², and sqrt(bc2) moves into the
 * step size and eps):
 *
 *   m' = β1 m + [(1 - β1) c] g
 *   v' = β2 v + [(1 - β2) c²] g g
 *   p' = p [1 - lr wd] - [lr sqrt(bc2) / bc1] m' / (sqrt(v') + [eps sqrt(bc2)])
 *
 * The bias corrections are scalars computed in float64 (β^t as exp(t ln β): ONNX Pow here takes
 * a constant exponent, and 1 - β2^t in float32 would lose most digits at small t).
 *
 * Every new m, v and parameter waits for every gradient and for `waitFor` (the step's loss): the
 * scalars they all use are read through `after`. Nothing of the forward or backward then runs
 * after an update, in any order, so a runner may write the updates into the state's own buffers
 * (`inPlaceProblems`, TrainLayout.inPlace). Without it, a forward value that only the loss needs
 * (its gradient does not read it) could be computed from an already-updated weight.
 */
export function adamw(
  slots: readonly AdamWSlot[],
  step: Value,
  lr: Value,
  opts: Partial<AdamWOptions> = {},
  waitFor: readonly Value[] = [],
): { updates: AdamWUpdate[]; gradNorm: Value } {
  const o = adamwOptions(opts);
  const g = step.graph;
  checkSlots(slots, step, lr);

  const clip = globalNormClip(
    slots.map((s) => s.grad),
    o.maxGradNorm,
  );
  const norm = clip.norm;
  const k = g.scope('scalars', () => {
    const barrier = (x: Value) => after(x, [norm, ...waitFor]);
    const coef = barrier(clip.coef);
    const one = g.scalar(1, 'float64');
    const t = barrier(cast(step, 'float64'));
    const lr64 = barrier(cast(lr, 'float64'));
    const bc1 = sub(one, exp(scale(t, Math.log(o.beta1))), 'Bc1');
    const sqrtBc2 = sqrt(sub(one, exp(scale(t, Math.log(o.beta2))), 'Bc2'));
    return {
      gradScale: scale(coef, 1 - o.beta1, 'GradScale'),
      squareScale: scale(mul(coef, coef), 1 - o.beta2, 'SquareScale'),
      stepSize: div(mul(lr64, sqrtBc2), bc1, 'StepSize'),
      eps: scale(sqrtBc2, o.eps, 'Eps'),
      decay: sub(one, scale(lr64, o.weightDecay), 'Decay'),
    };
  });
  const cached = new Map<string, Value>();
  const as = (name: keyof typeof k, dtype: Value['dtype']) => {
    const key = `${name}:${dtype}`;
    if (!cached.has(key))
      cached.set(
        key,
        g.scope('scalars', () => cast(k[name], dtype)),
      );
    return cached.get(key)!;
  };

  const updates = slots.map((s) =>
    g.scope(s.name, () => {
      const dt = s.param.dtype;
      const gi = s.grad;
      const m = add(scale(s.m, o.beta1), mul(gi, as('gradScale', dt)), 'M');
      const v = add(scale(s.v, o.beta2), mul(mul(gi, gi), as('squareScale', dt)), 'V');
      const ratio = div(m, add(sqrt(v), as('eps', dt)), 'Ratio');
      const decayed = o.weightDecay > 0 && o.decay(s.name) ? mul(s.param, as('decay', dt), 'Decay') : s.param;
      const k = o.lrScale(s.name);
      if (!(k > 0 && Number.isFinite(k)))
        throw new GraphError(`adamw: lrScale of ${s.name} is ${k}, not > 0`);
      const stepSize = k === 1 ? as('stepSize', dt) : scale(as('stepSize', dt), k, 'ScaledStepSize');
      const param = sub(decayed, mul(ratio, stepSize), 'Update');
      return { name: s.name, param, m, v };
    }),
  );
  return { updates, gradNorm: norm };
}

function checkSlots(slots: readonly AdamWSlot[], step: Value, lr: Value): void {
  const bad: string[] = [];
  if (slots.length === 0) bad.push('no parameters');
  if (step.rank !== 0 || !(step.dtype === 'int64' || isFloat(step.dtype)))
    bad.push(`step ${step} must be an int64 or float scalar`);
  if (lr.rank !== 0 || !isFloat(lr.dtype)) bad.push(`lr ${lr} must be a float scalar`);
  for (const s of slots) {
    for (const [what, v] of [
      ['grad', s.grad],
      ['m', s.m],
      ['v', s.v],
    ] as const) {
      if (v.dtype !== s.param.dtype || !shapeEq(v.shape, s.param.shape))
        bad.push(`${s.name}: ${what} ${v} does not match param ${s.param}`);
    }
    if (!isFloat(s.param.dtype)) bad.push(`${s.name}: param ${s.param} is not floating point`);
  }
  if (bad.length) throw new GraphError(`adamw: ${bad.join('; ')}`);
}
