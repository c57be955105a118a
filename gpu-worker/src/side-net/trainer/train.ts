import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { loadConfig, openCheckpoint } from '../../backbone/checkpoint/index.ts';
import { loadTokenizer } from '../../backbone/tokenizer/index.ts';
import type { BackboneConfig } from '../../backbone/types.ts';
import { buildGradAccumulation, buildTrainStep, toModelBytes } from '../../graph/index.ts';
import {
  collectGarbage,
  f32,
  i64,
  type Tensor,
  TRAINING_SESSION,
  type TrainModels,
  TrainRunner,
} from '../../runtime/index.ts';
import { resolveSideNet, type SideNetShape } from '../config.ts';
import {
  type Batch,
  BatchLoader,
  type LoadedBatch,
  mixSeed,
  permutation,
  type TrainingExample,
} from '../data/index.ts';
import { initSideNet, sideNetParams } from '../params.ts';
import { prunedSideNetInit } from '../prune.ts';
import { SIDE_IO, SIDE_METRICS, sideTrainSpec } from '../steps.ts';
import { ActivationSource, COLLECT_AFTER_BYTES } from './activations.ts';
import { BackbonePlan } from './backbone-pass.ts';
import { decodeCheckpoint, encodeCheckpoint, type TrainerState } from './checkpoint.ts';
import { type EvalContext, evaluateClassification, evaluateTokens, SideEvaluator } from './evaluate.ts';
import {
  checkExamples,
  resolveHyperparameters,
  sideNetInput,
  type TrainHyperparameters,
  type TrainSideNetOptions,
} from './options.ts';
import { TrainingAbortedError, type TrainResult, type TrainSummary, toAdapterWeights } from './result.ts';
import { type LrSchedule, learningRateAt, warmupSteps } from './schedule.ts';
import { StepPlan } from './step-plan.ts';

/** Random streams of the trainer (data/order.ts uses 1-3). */
const STREAM = { init: 11, dropout: 12, evalSample: 13 } as const;

/** Validation examples evaluated every few updates (the whole set is evaluated at the end). */
const EVAL_SAMPLE_EXAMPLES = 64;

/**
 * Train an LST / xLadder side network over a frozen backbone (DESIGN.md sections 1-2).
 *
 * Per update, for each of `microBatches` micro-batches: the backbone runs as plain inference on
 * the right-padded batch (or, after epoch 1, its activations come from the fp16 cache), and its
 * taps and final state go as they are into the side net's training step with the frozen LM head;
 * the update is AdamW at the step's warmup + cosine rate. By default the backbone runs ahead over
 * a window of micro-batches and is closed while their side steps run (TapSchedule 'phased'), so
 * the process never holds both at once. Checkpoints carry parameters, moments,
 * the step and the data cursor, so a resumed run continues the same loss sequence bit for bit.
 */
export async function trainSideNet(opts: TrainSideNetOptions): Promise<TrainResult> {
  const hp = resolveHyperparameters(opts.hyperparameters);
  const config = await loadConfig(opts.modelDir);
  const shape = resolveSideNet(config, sideNetInput(opts.sideNet, config));
  checkExamples(opts.train, 'training', config.vocabSize);
  if (opts.validation) checkExamples(opts.validation, 'validation', config.vocabSize);
  const tokenizer = await loadTokenizer(opts.modelDir);
  const padTokenId = tokenizer.padTokenId ?? tokenizer.eosTokenId ?? 0;
  const train = opts.train;
  const loader = new BatchLoader(train, {
    tokenBudget: hp.tokenBudget,
    maxBatchSize: hp.maxBatchSize,
    seed: hp.seed,
    shuffle: true,
    padTokenId,
    stepSize: hp.batchSize,
  });
  const plan = new StepPlan(loader, hp.epochs, hp.microBatches, hp.batchSize !== undefined);
  const batchesPerEpoch = loader.batchesOf(0).length;
  const { totalMicro, totalSteps } = plan;
  const schedule: LrSchedule = {
    peak: hp.learningRate,
    warmupSteps: warmupSteps(hp.warmup, totalSteps),
    totalSteps,
    minRatio: hp.minLrRatio,
  };

  const backbone = await BackbonePlan.prepare(opts.modelDir, opts.buildCacheDir, shape, opts.backbone);
  const disposers: (() => Promise<void> | void)[] = [];
  try {
    const run = runFingerprint(backbone.build.meta.key, shape, hp, loader.fingerprint);

    // Resume from the sink's latest checkpoint, if there is one.
    let state: TrainerState = {
      step: 0,
      loader: loader.state(),
      tokensSeen: 0,
      epochLoss: { epoch: 0, sum: 0, targets: 0, correct: 0 },
      activationCacheUsed: null,
    };
    let initial: Record<string, Float32Array> | undefined;
    const saved = await opts.checkpoint?.sink.loadLatest();
    if (saved) {
      const ck = decodeCheckpoint(saved.data, `checkpoint step ${saved.step}`);
      if (ck.run !== run) {
        throw new Error(
          `checkpoint step ${saved.step} belongs to another run (other backbone, side net, hyperparameters or data): refusing to resume`,
        );
      }
      loader.restore(ck.state.loader);
      const at = plan.indexOf(loader.cursor);
      if (at !== plan.microBefore(ck.state.step))
        throw new Error(
          `checkpoint step ${saved.step}: its data cursor (micro-batch ${at}) does not match its step`,
        );
      state = ck.state;
      initial = ck.tensors;
    }
    const resumedFromStep = saved ? state.step : null;
    initial ??= await initialWeights(opts.modelDir, shape, config, mixSeed(hp.seed, STREAM.init));

    // The models' bytes and the initial weights die with this call; collected before the first pass.
    const { runner, layout } = await createRunner(shape, hp, plan.accumulates, initial, {
      session: { ...TRAINING_SESSION, ...opts.session },
      startStep: state.step,
    });
    initial = undefined;
    await collectGarbage();
    let runnerOpen = true;
    disposers.push(() => (runnerOpen ? runner.dispose() : undefined));
    const notes: string[] = [];
    const source = new ActivationSource(
      backbone,
      opts.session ?? {},
      train,
      loader,
      padTokenId,
      opts.activationCache,
      hp.epochs,
      state.activationCacheUsed,
      notes,
      opts.taps,
    );
    source.yieldPoint = opts.yieldPoint;
    disposers.push(() => source.close());

    const policy = opts.checkpoint;
    let savedStep: number | null = saved ? saved.step : null;
    let savedAt = performance.now();
    const shapes: Record<string, number[]> = {};
    for (const p of layout.params) shapes[p.name] = shapes[p.m] = shapes[p.v] = p.shape;
    const save = async () => {
      if (!policy || savedStep === state.step) return;
      state = { ...state, loader: loader.state(), activationCacheUsed: source.usesCache };
      const tensors = runner.optimizerState() as Record<string, Float32Array>;
      await policy.sink.save(state.step, encodeCheckpoint({ run, state, tensors }, shapes), {
        run,
        epoch: String(loader.cursor.epoch),
      });
      savedStep = state.step;
      savedAt = performance.now();
    };

    // One micro-batch through the backbone and the side step, in a function of its own: the
    // batch's taps (150 MB for 2k tokens of a d=1024, 16-layer backbone) then die with its frame.
    // Held in the loop's suspended frame they stayed alive through the next batch's backbone pass.
    // `big`: the taps were large enough that collecting them at once is worth a GC.
    const runMicro = async (lb: LoadedBatch, t: number, micro: number, lr: number, remaining: number) => {
      const taps = await source.forBatch(lb, remaining);
      await opts.yieldPoint?.(); // between the backbone pass (or staged read) and the side step
      const feeds = { ...taps, ...batchFeeds(lb.batch, await source.lmHead()) };
      if (shape.config.dropout > 0) {
        const seed = mixSeed(hp.seed, STREAM.dropout, t, micro); // a pure function of (seed, step)
        feeds[SIDE_IO.dropoutSeed] = i64(BigInt64Array.of(BigInt(seed)), []);
      }
      const big =
        Object.values(taps).reduce((n, x) => n + (x.data as ArrayBufferView).byteLength, 0) >=
        COLLECT_AFTER_BYTES;
      // Accumulated gradients are weighted by target tokens: the update is the gradient of the
      // mean over every target of the step, however its micro-batches split them.
      const out = plan.accumulates
        ? { ...(await runner.accumulate(feeds, lb.batch.targets)), gradNorm: Number.NaN }
        : await runner.step(feeds, lr);
      return { ...out, correct: out.metrics[SIDE_METRICS.correct] ?? 0, big };
    };

    // Evaluation: a sample of the validation set every few updates, on backbone outputs computed once.
    const evaluation = opts.validation && opts.evaluation ? opts.evaluation : undefined;
    let evaluator: SideEvaluator | undefined;
    let sample: { batch: Batch; backbone: Record<string, Tensor> }[] | undefined;
    const evaluateSample = async (): Promise<{ loss: number; tokenAccuracy: number }> => {
      sample ??= await source.backboneFor(
        evalSample(opts.validation!, evaluation!.sampleExamples ?? EVAL_SAMPLE_EXAMPLES, hp.seed),
        hp.tokenBudget,
      );
      evaluator ??= await SideEvaluator.create(shape, await source.lmHead(), {
        chunk: hp.lossChunk,
        session: opts.session,
      });
      let sum = 0;
      let correct = 0;
      let targets = 0;
      for (const { batch, backbone } of sample) {
        await opts.yieldPoint?.();
        const out = await evaluator.tokens(runner.paramTensors(), batch, backbone);
        sum += out.loss * batch.targets;
        correct += out.correct;
        targets += batch.targets;
      }
      return { loss: sum / Math.max(1, targets), tokenAccuracy: correct / Math.max(1, targets) };
    };
    disposers.push(() => evaluator?.dispose());

    // One optimizer update per iteration.
    const started = performance.now();
    const startStep = state.step;
    const startTokens = state.tokensSeen;
    let consumed = plan.microBefore(state.step);
    while (state.step < totalSteps) {
      if (opts.signal?.aborted) {
        if (state.step > 0) await save();
        throw new TrainingAbortedError(state.step, savedStep, opts.signal.reason);
      }
      const t = state.step + 1;
      const lr = learningRateAt(t, schedule);
      const update = { lossSum: 0, correct: 0, targets: 0, epoch: 0, gradNorm: Number.NaN };
      for (let micro = 0, n = plan.microsOf(t); micro < n; micro++, consumed++) {
        const lb = loader.next();
        const { loss, gradNorm, correct, big } = await runMicro(lb, t, micro, lr, totalMicro - consumed);
        if (big) await collectGarbage();
        const { targets, tokens } = lb.batch;
        update.gradNorm = gradNorm;
        update.lossSum += loss * targets;
        update.correct += correct;
        update.targets += targets;
        update.epoch = lb.epoch;
        state.tokensSeen += tokens;
        if (state.epochLoss.epoch !== lb.epoch)
          state.epochLoss = { epoch: lb.epoch, sum: 0, targets: 0, correct: 0 };
        state.epochLoss.sum += loss * targets;
        state.epochLoss.correct = (state.epochLoss.correct ?? 0) + correct;
        state.epochLoss.targets += targets;
      }
      if (plan.accumulates) ({ gradNorm: update.gradNorm } = await runner.apply(lr));
      state.step = t;

      const valid =
        evaluation && (t % evaluation.everySteps === 0 || t === totalSteps)
          ? await evaluateSample()
          : undefined;
      const elapsed = (performance.now() - started) / 1000;
      await opts.onProgress?.({
        step: t,
        totalSteps,
        epoch: update.epoch + 1,
        loss: update.lossSum / Math.max(1, update.targets),
        tokenAccuracy: update.correct / Math.max(1, update.targets),
        ...(valid ? { valid } : {}),
        gradNorm: update.gradNorm,
        lr,
        tokens: state.tokensSeen,
        tokensPerSecond: (state.tokensSeen - startTokens) / Math.max(elapsed, 1e-9),
        etaSeconds: (elapsed / (t - startStep)) * (totalSteps - t),
      });
      const due =
        (policy?.everySteps !== undefined && t % policy.everySteps === 0) ||
        (policy?.everySeconds !== undefined && (performance.now() - savedAt) / 1000 >= policy.everySeconds);
      if (due) await save();
    }
    await save(); // the finished state: a crash before publishing resumes straight to the end

    // Evaluation with the final parameters, the training step's session closed first.
    const params = runner.params() as Record<string, Float32Array>;
    runnerOpen = false;
    await runner.dispose();
    sample = undefined;
    await evaluator?.dispose();
    evaluator = undefined;
    let finalEvalLoss: number | null = null;
    let finalEvalTokenAccuracy: number | null = null;
    let accuracy: TrainSummary['accuracy'] = null;
    const labels = opts.labels ? [...opts.labels] : classLabels(train);
    if (opts.validation) {
      const forward = await source.evaluationBackbone();
      const evaluator = await SideEvaluator.create(shape, await source.lmHead(), {
        chunk: hp.lossChunk,
        session: opts.session,
      });
      disposers.push(() => evaluator.dispose());
      const tensors = Object.fromEntries(
        layout.params.map((p) => [p.name, f32(params[p.name]!, p.shape, p.name)]),
      );
      const ctx: EvalContext = {
        evaluator,
        backbone: forward,
        params: () => tensors,
        tokenBudget: hp.tokenBudget,
        padTokenId,
        yieldPoint: opts.yieldPoint,
      };
      const full = await evaluateTokens(opts.validation, ctx);
      finalEvalLoss = full.loss;
      finalEvalTokenAccuracy = full.accuracy;
      if (labels && opts.validation.some((e) => e.classLabel !== undefined))
        accuracy = await evaluateClassification(opts.validation, labels, tokenizer, ctx);
    }

    source.finish();
    const tokensPerEpoch = train.reduce((n, e) => n + e.inputIds.length, 0);
    return {
      params,
      sideNet: shape.config,
      shape,
      labels,
      summary: {
        steps: state.step,
        epochs: hp.epochs,
        batchesPerEpoch,
        tokensPerEpoch,
        tokensSeen: state.tokensSeen,
        billableTokens: tokensPerEpoch * hp.epochs,
        finalTrainLoss: state.epochLoss.sum / Math.max(1, state.epochLoss.targets),
        finalEvalLoss,
        finalTrainTokenAccuracy: (state.epochLoss.correct ?? 0) / Math.max(1, state.epochLoss.targets),
        finalEvalTokenAccuracy,
        batchSize: hp.batchSize ?? null,
        accuracy,
        resumedFromStep,
        activationCache: source.report,
        notes: [...notes, ...overflowNote(source.overflow)],
      },
      backbone: { fingerprint: backbone.build.meta.fingerprint, buildKey: backbone.build.meta.key },
      toAdapterWeights: () => toAdapterWeights(shape, params),
    };
  } finally {
    for (const dispose of disposers.reverse()) await dispose();
  }
}

/** A note when some of the backbone's taps did not fit float16 and were clamped for the side net. */
function overflowNote({ passes, maxAbs }: { passes: number; maxAbs: number }): string[] {
  if (!passes) return [];
  return [
    `${passes} backbone pass${passes === 1 ? '' : 'es'} gave taps past float16's range (largest |value| ${maxAbs}); ` +
      'the side net read them clamped to +-65504',
  ];
}

/** Fresh side-net weights: random, or pruned from the tapped backbone blocks (config.init). */
async function initialWeights(
  modelDir: string,
  shape: SideNetShape,
  config: BackboneConfig,
  seed: number,
): Promise<Record<string, Float32Array>> {
  if (shape.config.init !== 'pruned') return initSideNet(shape, seed);
  const source = await openCheckpoint(modelDir);
  try {
    return await prunedSideNetInit(shape, config, source, seed);
  } finally {
    await source.close();
  }
}

/** The training step's runner over fresh models; only the layout is kept of them. */
async function createRunner(
  shape: SideNetShape,
  hp: TrainHyperparameters,
  accumulates: boolean,
  initial: Record<string, Float32Array>,
  options: Parameters<typeof TrainRunner.create>[2],
): Promise<{ runner: TrainRunner; layout: TrainModels['layout'] }> {
  const models = trainModels(shape, hp, accumulates);
  return { runner: await TrainRunner.create(models, initial, options), layout: models.layout };
}

/** The training-step model(s): one step, or grad + apply for gradient accumulation. */
function trainModels(shape: SideNetShape, hp: TrainHyperparameters, accumulates: boolean): TrainModels {
  const params = sideNetParams(shape);
  const matrices = new Set(params.filter((p) => p.shape.length >= 2).map((p) => p.name));
  const gates = new Set(params.filter((p) => isGate(p.name)).map((p) => p.name));
  const spec = sideTrainSpec(shape, {
    chunk: hp.lossChunk,
    optim: {
      weightDecay: hp.weightDecay,
      maxGradNorm: hp.maxGradNorm,
      // Decay weight matrices only: norms, gates and biases are vectors.
      decay: (name) => matrices.has(name),
      lrScale: (name) => (gates.has(name) ? hp.gateLrScale : 1),
    },
  });
  if (!accumulates) {
    const { graph, layout } = buildTrainStep(spec);
    return { layout, step: toModelBytes(graph) };
  }
  const { grad, apply, layout } = buildGradAccumulation(spec);
  return { layout, grad: toModelBytes(grad), apply: toModelBytes(apply) };
}

/** The ladder gates z_j (params.ts: `layers.{j}.gate`). */
function isGate(name: string): boolean {
  return /^layers\.\d+\.gate$/.test(name);
}

/** Validation examples to evaluate every few updates: a seeded sample of at most `most`. */
function evalSample(examples: readonly TrainingExample[], most: number, seed: number): TrainingExample[] {
  if (examples.length <= most) return [...examples];
  const order = permutation(examples.length, mixSeed(seed, STREAM.evalSample));
  return order
    .slice(0, most)
    .sort((a, b) => a - b)
    .map((i) => examples[i]!);
}

/** A batch's tensors besides the backbone's activations (the typed arrays go in uncopied). */
function batchFeeds(batch: Batch, lmHead: Tensor): Record<string, Tensor> {
  const dims = [batch.size, batch.length];
  return {
    [SIDE_IO.lmHead]: lmHead,
    [SIDE_IO.labels]: i64(batch.labels, dims),
    [SIDE_IO.mask]: i64(batch.attentionMask, dims),
    [SIDE_IO.positions]: i64(batch.positionIds, dims),
  };
}

/** The sorted (code-point order) class labels of classification examples, or null. */
function classLabels(examples: readonly TrainingExample[]): string[] | null {
  const set = new Set<string>();
  for (const e of examples) if (e.classLabel !== undefined) set.add(e.classLabel);
  return set.size ? [...set].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)) : null;
}

/** What decides the trajectory: a checkpoint resumes only into the same. */
function runFingerprint(
  buildKey: string,
  shape: SideNetShape,
  hp: TrainHyperparameters,
  data: string,
): string {
  const json = JSON.stringify({ buildKey, sideNet: shape.config, hp, data }, (_, v) =>
    typeof v === 'number' && !Number.isFinite(v) ? String(v) : v,
  );
  return createHash('sha256').update(json).digest('hex').slice(0, 32);
}
