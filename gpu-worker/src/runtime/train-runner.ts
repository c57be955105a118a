import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import type { TrainLayout } from '../graph/index.ts';
import { createSession, FeedError, type Feeds, type Session, type SessionOptions } from './session.ts';

/**
 * Drives the training-step models built by graph/train-step.ts. Parameters, Adam moments and
 * gradient accumulators live in onnxruntime tensors: the outputs of one run are the inputs of
 * the next (paired by `layout.next`), so nothing is copied through JS arrays between steps.
 *
 * When the layout allows it (`layout.inPlace`), each run writes the next state into the state
 * tensors themselves: they go to onnxruntime as the `.next` outputs' buffers. At a step's end
 * there are then two copies of the state (the state, and the JS copies onnxruntime-node still
 * returns of those outputs, dropped at once) instead of three (inputs, onnxruntime's outputs and
 * their JS copies: ~65 MB more for LST's 5.5M parameters). A run that fails part way may have
 * written part of the state, so the runner then refuses to go on (resume from a checkpoint).
 */

export interface TrainModels {
  layout: TrainLayout;
  /** The one-model step; needed by `step()`. */
  step?: Uint8Array | string;
  /** Gradient accumulation; both needed by `accumulate()` / `apply()`. */
  grad?: Uint8Array | string;
  apply?: Uint8Array | string;
}

export interface TrainRunnerOptions {
  session: Partial<SessionOptions>;
  /** Updates already taken (when resuming); the next update uses step = startStep + 1. */
  startStep: number;
}

const DEFAULTS: TrainRunnerOptions = { session: {}, startStep: 0 };

export type StateArray = Float32Array | Float64Array;

export class TrainRunner {
  private t: number;
  private microBatches = 0;
  /** The accumulated micro-batches' loss weights, summed: what `apply` divides by. */
  private weights = 0;
  /** Wall time spent inside onnxruntime, to tell it apart from the JS around it. */
  readonly timing = { lastRunMs: 0, totalRunMs: 0, runs: 0 };
  private busy = false;
  /** Why the state can no longer be trusted (an in-place run failed part way). */
  private broken: string | undefined;

  private constructor(
    private readonly layout: TrainLayout,
    private readonly sessions: { step?: Session; grad?: Session; apply?: Session },
    /** Every state input by name: params, m_*, v_*, acc_*. */
    private readonly state: Map<string, ort.Tensor>,
    /** Zero tensors to reset the accumulators with (inputs are never written by ORT). */
    private readonly zeros: Map<string, ort.Tensor>,
    startStep: number,
  ) {
    this.t = startStep;
  }

  /**
   * Open the sessions and place the initial state. `initial` must hold every parameter; it may
   * also hold `m_<name>` / `v_<name>` (resuming), which otherwise start at zero.
   */
  static async create(
    models: TrainModels,
    initial: Record<string, StateArray>,
    opts: Partial<TrainRunnerOptions> = {},
  ): Promise<TrainRunner> {
    const o = { ...DEFAULTS, ...opts } satisfies TrainRunnerOptions;
    const { layout } = models;
    const state = new Map<string, ort.Tensor>();
    const zeros = new Map<string, ort.Tensor>();
    const bad: string[] = [];
    const known = new Set(layout.params.flatMap((p) => [p.name, p.m, p.v]));
    for (const name of Object.keys(initial)) if (!known.has(name)) bad.push(`unknown state '${name}'`);
    for (const p of layout.params) {
      const size = p.shape.reduce((a, b) => a * b, 1);
      for (const name of [p.name, p.m, p.v]) {
        const data = initial[name];
        if (data === undefined) {
          if (name === p.name) bad.push(`missing param '${name}'`);
          else state.set(name, zerosOf(p.dtype, p.shape));
          continue;
        }
        const want = p.dtype === 'float32' ? Float32Array : Float64Array;
        if (!(data instanceof want)) bad.push(`'${name}' must be a ${want.name} (${p.dtype})`);
        else if (data.length !== size)
          bad.push(`'${name}' has ${data.length} values, shape [${p.shape.join(', ')}] needs ${size}`);
        else state.set(name, new ort.Tensor(p.dtype, data.slice(), p.shape));
      }
      if (models.grad) {
        // accumulators only where there is accumulation (a copy of the parameters' size); an
        // in-place runner zeroes its own after an update, any other swaps this zero tensor back in
        const zero = zerosOf(p.dtype, p.shape);
        state.set(p.acc, zero);
        if (!layout.inPlace) zeros.set(p.acc, zero);
      }
    }
    if (!models.step && !(models.grad && models.apply)) bad.push('no step model and no grad + apply pair');
    if (bad.length) throw new Error(`TrainRunner.create: ${bad.join('; ')}`);

    // Training graphs recompute on purpose in their backward (attention blocks, sigmoid of a
    // SwiGLU gate, ...); onnxruntime's common-subexpression elimination would merge each
    // recomputation with its forward twin and keep the forward value alive until the backward
    // (~230 MB more for a 2k-token LST step, same speed). Leave it out unless told otherwise.
    const session: Partial<SessionOptions> = {
      disabledOptimizers: ['CommonSubexpressionElimination'],
      ...o.session,
    };
    const sessions: { step?: Session; grad?: Session; apply?: Session } = {};
    try {
      for (const which of ['step', 'grad', 'apply'] as const) {
        const model = models[which];
        if (model !== undefined) sessions[which] = await createSession(model, session);
      }
    } catch (err) {
      await Promise.all(Object.values(sessions).map((s) => s.dispose()));
      throw err;
    }
    return new TrainRunner(layout, sessions, state, zeros, o.startStep);
  }

  /** Updates taken so far. */
  get stepCount(): number {
    return this.t;
  }

  /** One whole step on `batch` (tensors named as in the layout). */
  async step(
    batch: Feeds,
    lr: number,
  ): Promise<{ loss: number; gradNorm: number; metrics: Record<string, number> }> {
    return this.exclusive('step', async () => {
      const session = this.need('step', this.sessions.step);
      const out = await this.run(session, { ...batch, ...this.scalars(this.t + 1, lr) });
      this.t++;
      return {
        loss: scalarOf(out, this.layout.outputs.loss),
        gradNorm: scalarOf(out, this.layout.outputs.gradNorm),
        metrics: this.metricsOf(out),
      };
    });
  }

  /**
   * Add one micro-batch's gradient, times `weight`, to the accumulators; returns that micro-batch's
   * loss. `apply` divides by the weights' sum: weight each micro-batch by its target count for a
   * token-weighted mean over the whole step, or leave every weight 1 to average micro-batch means.
   */
  async accumulate(batch: Feeds, weight = 1): Promise<{ loss: number; metrics: Record<string, number> }> {
    if (!(weight > 0 && Number.isFinite(weight)))
      throw new RangeError(`TrainRunner.accumulate: weight ${weight} must be a positive number`);
    return this.exclusive('accumulate', async () => {
      const session = this.need('accumulate', this.sessions.grad);
      const feeds = {
        ...batch,
        [this.layout.inputs.lossWeight]: new ort.Tensor('float32', Float32Array.of(weight), []),
      };
      const out = await this.run(session, feeds);
      this.microBatches++;
      this.weights += weight;
      return { loss: scalarOf(out, this.layout.outputs.loss), metrics: this.metricsOf(out) };
    });
  }

  /** Divide the accumulated gradients by their weights' sum, take one AdamW step, reset the accumulators. */
  async apply(lr: number): Promise<{ gradNorm: number; microBatches: number }> {
    return this.exclusive('apply', async () => {
      const session = this.need('apply', this.sessions.apply);
      const n = this.microBatches;
      if (n === 0) throw new Error('TrainRunner.apply: no micro-batches accumulated');
      const feeds = {
        ...this.scalars(this.t + 1, lr),
        [this.layout.inputs.microBatches]: new ort.Tensor('float32', Float32Array.of(this.weights), []),
      };
      const out = await this.run(session, feeds);
      if (this.layout.inPlace)
        for (const p of this.layout.params) (this.state.get(p.acc)!.data as StateArray).fill(0);
      else for (const [acc, zero] of this.zeros) this.state.set(acc, zero);
      this.microBatches = 0;
      this.weights = 0;
      this.t++;
      return { gradNorm: scalarOf(out, this.layout.outputs.gradNorm), microBatches: n };
    });
  }

  /** A copy of every parameter. */
  params(): Record<string, StateArray> {
    return this.read(this.layout.params.map((p) => p.name));
  }

  /**
   * The current parameter tensors themselves, no copy (to feed an evaluation model between
   * updates). An in-place runner's next update writes the new values into them; otherwise the
   * update replaces them and they keep the values they had.
   */
  paramTensors(): Record<string, ort.Tensor> {
    return Object.fromEntries(this.layout.params.map((p) => [p.name, this.state.get(p.name)!]));
  }

  /** A copy of parameters and Adam moments (for a checkpoint; resume with `startStep`). */
  optimizerState(): Record<string, StateArray> {
    return this.read(this.layout.params.flatMap((p) => [p.name, p.m, p.v]));
  }

  async dispose(): Promise<void> {
    const sessions = Object.values(this.sessions);
    this.sessions.step = this.sessions.grad = this.sessions.apply = undefined;
    this.state.clear();
    await Promise.all(sessions.map((s) => s.dispose()));
  }

  /** The models' metric outputs (TrainStepSpec.metrics) by name. */
  private metricsOf(out: Record<string, ort.Tensor>): Record<string, number> {
    const entries = Object.entries(this.layout.outputs.metrics);
    return Object.fromEntries(entries.map(([name, output]) => [name, scalarOf(out, output)]));
  }

  private read(names: string[]): Record<string, StateArray> {
    return Object.fromEntries(names.map((n) => [n, (this.state.get(n)!.data as StateArray).slice()]));
  }

  private scalars(step: number, lr: number): Feeds {
    const { inputs, stepDtype } = this.layout;
    return {
      [inputs.step]:
        stepDtype === 'int64'
          ? new ort.Tensor('int64', BigInt64Array.of(BigInt(step)), [])
          : new ort.Tensor('float32', Float32Array.of(step), []),
      [inputs.lr]: new ort.Tensor('float32', Float32Array.of(lr), []),
    };
  }

  /**
   * Run with the state inputs this session takes; its `.next` outputs become the new state,
   * written into the state tensors themselves when the layout allows it.
   */
  private async run(session: Session, feeds: Feeds): Promise<Record<string, ort.Tensor>> {
    if (this.broken) throw new Error(`TrainRunner: ${this.broken}`);
    const all: Feeds = { ...feeds };
    for (const name of session.inputNames) {
      const t = this.state.get(name);
      if (t !== undefined) all[name] = t;
    }
    const into: Record<string, ort.Tensor> = {};
    if (this.layout.inPlace) {
      const outputs = new Set(session.outputNames);
      for (const [input, output] of Object.entries(this.layout.next))
        if (outputs.has(output) && all[input] !== undefined) into[output] = all[input];
    }
    const t0 = performance.now();
    let out: Record<string, ort.Tensor>;
    try {
      out = await session.run(all, undefined, into);
    } catch (err) {
      // a FeedError is raised before anything runs
      if (Object.keys(into).length && !(err instanceof FeedError))
        this.broken = `a run failed after it may have written part of the state in place (${(err as Error).message}); start a new runner from the last checkpoint`;
      throw err;
    }
    this.timing.lastRunMs = performance.now() - t0;
    this.timing.totalRunMs += this.timing.lastRunMs;
    this.timing.runs++;
    for (const [input, output] of Object.entries(this.layout.next)) {
      const t = out[output];
      if (t !== undefined && into[output] === undefined) this.state.set(input, t);
    }
    return out;
  }

  private need(what: string, session: Session | undefined): Session {
    if (!session)
      throw new Error(`TrainRunner.${what}: this runner has no model for it (disposed or not given)`);
    return session;
  }

  private async exclusive<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.busy) throw new Error(`TrainRunner.${what}: another call is still running; await it first`);
    this.busy = true;
    try {
      return await fn();
    } finally {
      this.busy = false;
    }
  }
}

function zerosOf(dtype: 'float32' | 'float64', shape: number[]): ort.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  return new ort.Tensor(dtype, dtype === 'float32' ? new Float32Array(size) : new Float64Array(size), shape);
}

function scalarOf(out: Record<string, ort.Tensor>, name: string): number {
  const t = out[name];
  if (!t) throw new Error(`TrainRunner: the model gave no '${name}' output`);
  return Number(t.data[0]);
}
