import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../../backbone/checkpoint/index.ts';
import { loadTokenizer } from '../../backbone/tokenizer/index.ts';
import { buildGradAccumulation, buildTrainStep, toModelBytes } from '../../graph/index.ts';
import { f32, i64, type Tensor, type TrainModels, TrainRunner } from '../../runtime/index.ts';
import { resolveSideNet, type SideNetShape } from '../config.ts';
import { BatchLoader, collate, type LoadedBatch, mixSeed, type TrainingExample } from '../data/index.ts';
import { initSideNet, sideNetParams } from '../params.ts';
import { SIDE_IO, sideTrainSpec } from '../steps.ts';
import { ActivationCache, type ActivationCacheReport, activationBytes } from './activation-cache.ts';
import { BackbonePass, loadLmHead } from './backbone-pass.ts';
import { decodeCheckpoint, encodeCheckpoint, type TrainerState } from './checkpoint.ts';
import { type EvalContext, evaluateClassification, evaluateLoss, SideEvaluator } from './evaluate.ts';
import {
  checkExamples,
  resolveHyperparameters,
  sideNetInput,
  type TrainHyperparameters,
  type TrainSideNetOptions,
} from './options.ts';
import { TrainingAbortedError, type TrainResult, toAdapterWeights } from './result.ts';
import { type LrSchedule, learningRateAt, warmupSteps } from './schedule.ts';

/** Random streams of the trainer (order.ts uses 1-3 for data). */
const STREAM = { init: 11, dropout: 12 } as const;

/**
 * Train an LST / xLadder side network over a frozen backbone (DESIGN.md sections 1-2).
 *
 * Per update, for each of `microBatches` micro-batches: the backbone runs as plain inference on
 * the right-padded batch (or, after epoch 1, its activations come from the fp16 cache), its taps
 * and final state go as they are into the side net's training step with the frozen LM head; the
 * update is AdamW with warmup + cosine. Checkpoints carry parameters, moments, the step and the
 * data cursor, so a resumed run continues the same loss sequence bit for bit.
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
  const loaderOptions = {
    tokenBudget: hp.tokenBudget,
    maxBatchSize: hp.maxBatchSize,
    seed: hp.seed,
    shuffle: true,
    padTokenId,
  };
  const loader = new BatchLoader(train, loaderOptions);
  const batchesPerEpoch = loader.batchesOf(0).length; // packing depends on lengths only: every epoch alike
  const totalMicro = batchesPerEpoch * hp.epochs;
  const totalSteps = Math.ceil(totalMicro / hp.microBatches);
  const schedule: LrSchedule = {
    peak: hp.learningRate,
    warmupSteps: warmupSteps(hp.warmup, totalSteps),
    totalSteps,
    minRatio: hp.minLrRatio,
  };
  const labels = opts.labels ? [...opts.labels] : classLabels(train);

  const backbone = await BackbonePass.open(
    opts.modelDir,
    opts.buildCacheDir,
    shape,
    opts.backbone,
    opts.session,
  );
  const run = runFingerprint(backbone.build.meta.key, shape, hp, loader.fingerprint);
  const disposers: (() => Promise<void> | void)[] = [() => backbone.dispose()];
  try {
    const lmHead = f32(
      await loadLmHead(opts.modelDir, config),
      [config.vocabSize, config.hiddenSize],
      'lm_head',
    );

    // Resume from the sink's latest checkpoint, if there is one.
    let state: TrainerState = {
      step: 0,
      loader: loader.state(),
      tokensSeen: 0,
      epochLoss: { epoch: 0, sum: 0, targets: 0 },
      activationCacheUsed: null,
    };
    let initial: Record<string, Float32Array> = initSideNet(shape, mixSeed(hp.seed, STREAM.init));
    const saved = await opts.checkpoint?.sink.loadLatest();
    if (saved) {
      const ck = decodeCheckpoint(saved.data, `checkpoint step ${saved.step}`);
      if (ck.run !== run) {
        throw new Error(
          `checkpoint step ${saved.step} belongs to another run (other backbone, side net, hyperparameters or data): refusing to resume`,
        );
      }
      loader.restore(ck.state.loader);
      const at = ck.state.loader.epoch * batchesPerEpoch + ck.state.loader.index;
      if (at !== Math.min(ck.state.step * hp.microBatches, totalMicro)) {
        throw new Error(
          `checkpoint step ${saved.step}: its data cursor (micro-batch ${at}) does not match its step`,
        );
      }
      state = ck.state;
      initial = ck.tensors;
    }
    const resumedFromStep = saved ? state.step : null;

    const spec = sideTrainSpec(shape, {
      chunk: hp.lossChunk,
      optim: { weightDecay: hp.weightDecay, maxGradNorm: hp.maxGradNorm, decay: isMatrix(shape) },
    });
    const models: TrainModels =
      hp.microBatches === 1
        ? (({ graph, layout }) => ({ layout, step: toModelBytes(graph) }))(buildTrainStep(spec))
        : (({ grad, apply, layout }) => ({ layout, grad: toModelBytes(grad), apply: toModelBytes(apply) }))(
            buildGradAccumulation(spec),
          );
    const runner = await TrainRunner.create(models, initial, {
      session: opts.session ?? {},
      startStep: state.step,
    });
    disposers.push(() => runner.dispose());
    const shapes: Record<string, number[]> = {};
    for (const p of models.layout.params) shapes[p.name] = shapes[p.m] = shapes[p.v] = p.shape;

    // The activation cache, when configured and within its budget.
    const notes: string[] = [];
    const lengths = train.map((e) => e.inputIds.length);
    const cacheReport: ActivationCacheReport = {
      enabled: opts.activationCache !== undefined,
      used: false,
      bytes: activationBytes(lengths, shape.d, backbone.names.length),
      maxBytes: opts.activationCache?.maxBytes ?? 0,
      reason: null,
    };
    let cache: ActivationCache | undefined;
    if (!opts.activationCache) cacheReport.reason = 'no activation cache configured';
    else if (hp.epochs < 2) cacheReport.reason = 'one epoch: nothing to reuse';
    else if (cacheReport.bytes > cacheReport.maxBytes)
      cacheReport.reason = `the training set needs ${cacheReport.bytes} bytes as fp16, over the ${cacheReport.maxBytes}-byte budget`;
    else {
      const key = createHash('sha256')
        .update(JSON.stringify([backbone.build.meta.key, backbone.names, loader.fingerprint]))
        .digest('hex');
      cache = ActivationCache.open(opts.activationCache.dir, key, backbone.names, shape.d, lengths);
      disposers.push(() => cache?.close());
    }
    const dropCache = (reason: string) => {
      cache?.remove();
      cache = undefined;
      cacheReport.reason = reason;
    };
    const decideCache = () => {
      const used = cache !== undefined;
      if (state.activationCacheUsed !== null && state.activationCacheUsed !== used) {
        notes.push(
          `the activation cache was ${state.activationCacheUsed ? '' : 'not '}used before the resume and is ${used ? '' : 'not '}now: ` +
            'losses after it match the uninterrupted run within fp16 rounding, not bit for bit',
        );
      }
      state.activationCacheUsed = used;
    };
    /** Store every epoch-0 batch the cache misses (after a resume), exactly as epoch 0 ran it. */
    const fillCache = async () => {
      for (const indices of loader.batchesOf(0)) {
        if (!cache) return;
        if (indices.every((i) => cache!.has(i))) continue;
        const batch = collate(train, indices, padTokenId);
        const problem = cache.capture(batch, await backbone.run(batch));
        if (problem) dropCache(problem);
      }
      cache?.seal();
    };
    let cacheChecked = false;
    const activations = async (lb: LoadedBatch): Promise<Record<string, Tensor>> => {
      if (lb.epoch > 0 && !cacheChecked) {
        cacheChecked = true;
        if (cache && !cache.complete) await fillCache();
        decideCache();
      }
      if (lb.epoch > 0 && cache) {
        cacheReport.used = true;
        return cache.read(lb.batch);
      }
      const out = await backbone.run(lb.batch);
      if (lb.epoch === 0 && cache && !cache.complete) {
        const problem = cache.capture(lb.batch, out);
        if (problem) dropCache(problem);
      }
      return out;
    };

    // Checkpoints.
    const policy = opts.checkpoint;
    let savedStep: number | null = saved ? saved.step : null;
    let savedAt = performance.now();
    const save = async () => {
      if (!policy || savedStep === state.step) return;
      const tensors = runner.optimizerState() as Record<string, Float32Array>;
      const data = encodeCheckpoint({ run, state: { ...state, loader: loader.state() }, tensors }, shapes);
      await policy.sink.save(state.step, data, { run, epoch: String(loader.cursor.epoch) });
      savedStep = state.step;
      savedAt = performance.now();
    };

    // The loop: one optimizer update per iteration.
    const started = performance.now();
    const startStep = state.step;
    const startTokens = state.tokensSeen;
    let consumed = Math.min(state.step * hp.microBatches, totalMicro);
    while (state.step < totalSteps) {
      if (opts.signal?.aborted) {
        await save();
        throw new TrainingAbortedError(state.step, savedStep, opts.signal.reason);
      }
      const t = state.step + 1;
      const lr = learningRateAt(t, schedule);
      let lossSum = 0;
      let targets = 0;
      let epoch = 0;
      let gradNorm = Number.NaN;
      for (let micro = 0; micro < hp.microBatches && consumed < totalMicro; micro++, consumed++) {
        const lb = loader.next();
        const { batch } = lb;
        const feeds: Record<string, Tensor> = {
          ...(await activations(lb)),
          [SIDE_IO.lmHead]: lmHead,
          [SIDE_IO.labels]: i64(batch.labels, [batch.size, batch.length]),
          [SIDE_IO.mask]: i64(batch.attentionMask, [batch.size, batch.length]),
          [SIDE_IO.positions]: i64(batch.positionIds, [batch.size, batch.length]),
        };
        if (shape.config.dropout > 0) {
          feeds[SIDE_IO.dropoutSeed] = i64(
            BigInt64Array.of(BigInt(mixSeed(hp.seed, STREAM.dropout, t, micro))),
            [],
          );
        }
        let loss: number;
        if (hp.microBatches === 1) ({ loss, gradNorm } = await runner.step(feeds, lr));
        else ({ loss } = await runner.accumulate(feeds));
        lossSum += loss * batch.targets;
        targets += batch.targets;
        state.tokensSeen += batch.tokens;
        epoch = lb.epoch;
        if (state.epochLoss.epoch !== lb.epoch) state.epochLoss = { epoch: lb.epoch, sum: 0, targets: 0 };
        state.epochLoss.sum += loss * batch.targets;
        state.epochLoss.targets += batch.targets;
      }
      if (hp.microBatches > 1) ({ gradNorm } = await runner.apply(lr));
      state.step = t;

      const elapsed = (performance.now() - started) / 1000;
      await opts.onProgress?.({
        step: t,
        totalSteps,
        epoch: epoch + 1,
        loss: lossSum / Math.max(1, targets),
        gradNorm,
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
    await save(); // a finished run's last state: a crash before publishing resumes straight to the end

    // Evaluation with the final parameters.
    let finalEvalLoss: number | null = null;
    let accuracy: TrainResult['summary']['accuracy'] = null;
    if (opts.validation) {
      const evaluator = await SideEvaluator.create(shape, lmHead, {
        chunk: hp.lossChunk,
        session: opts.session,
      });
      disposers.push(() => evaluator.dispose());
      const ctx: EvalContext = {
        evaluator,
        backbone: (b) => backbone.run(b),
        params: () => runner.paramTensors(),
        tokenBudget: hp.tokenBudget,
        padTokenId,
      };
      finalEvalLoss = await evaluateLoss(opts.validation, ctx);
      if (labels && opts.validation.some((e) => e.classLabel !== undefined))
        accuracy = await evaluateClassification(opts.validation, labels, tokenizer, ctx);
    }

    const params = runner.params() as Record<string, Float32Array>;
    cache?.remove(); // the run is over: free the disk
    cache = undefined;
    const epochs = hp.epochs;
    const tokensPerEpoch = lengths.reduce((a, b) => a + b, 0);
    return {
      params,
      sideNet: shape.config,
      shape,
      labels,
      summary: {
        steps: state.step,
        epochs,
        batchesPerEpoch,
        tokensPerEpoch,
        tokensSeen: state.tokensSeen,
        billableTokens: tokensPerEpoch * epochs,
        finalTrainLoss: state.epochLoss.sum / Math.max(1, state.epochLoss.targets),
        finalEvalLoss,
        accuracy,
        resumedFromStep,
        activationCache: cacheReport,
        notes,
      },
      backbone: { fingerprint: backbone.build.meta.fingerprint, buildKey: backbone.build.meta.key },
      toAdapterWeights: () => toAdapterWeights(shape, params),
    };
  } finally {
    for (const dispose of disposers.reverse()) await dispose();
  }
}

/** Weight decay on weight matrices only: norms, gates and biases are vectors. */
function isMatrix(shape: SideNetShape): (name: string) => boolean {
  const matrices = new Set(
    sideNetParams(shape)
      .filter((p) => p.shape.length >= 2)
      .map((p) => p.name),
  );
  return (name) => matrices.has(name);
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
