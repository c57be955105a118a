import type { SideNetConfigInput } from '@ladder/schemas';
import type { BackboneConfig } from '../../backbone/types.ts';
import type { SessionOptions } from '../../runtime/index.ts';
import { lstPreset, xladderPreset } from '../config.ts';
import type { TrainingExample } from '../data/index.ts';
import type { ActivationCacheOptions } from './activation-cache.ts';
import type { TapSchedule } from './activations.ts';
import type { BackboneBuildChoice } from './backbone-pass.ts';
import type { Warmup } from './schedule.ts';
import type { CheckpointSink } from './sinks.ts';

export interface TrainHyperparameters {
  epochs: number;
  /** Peak learning rate. */
  learningRate: number;
  /** Linear warmup to the peak, as updates or a share of all updates. */
  warmup: Warmup;
  /** The cosine decay ends at minLrRatio x learningRate. */
  minLrRatio: number;
  /** AdamW's decoupled decay, on weight matrices only (not norms, gates, biases). */
  weightDecay: number;
  /** Global gradient-norm clipping; Infinity: none. */
  maxGradNorm: number;
  /**
   * Examples per optimizer update, carried by as many micro-batches (within tokenBudget) as they
   * need; their gradients are accumulated and averaged over all their target tokens. Undefined:
   * each update takes `microBatches` micro-batches packed from the whole epoch.
   */
  batchSize: number | undefined;
  /** Micro-batches per update when batchSize is undefined (gradient accumulation). */
  microBatches: number;
  /**
   * The ladder gates' learning rate as a multiple of learningRate: the original LST's gate
   * sigmoid(alpha / T), T = 0.1, under Adam is sigmoid(z) at lr / T (AdamWOptions.lrScale).
   */
  gateLrScale: number;
  /** Padded tokens per micro-batch (B x T_padded): bounds the memory of one step. */
  tokenBudget: number;
  /** Rows per micro-batch at most, whatever the budget allows. */
  maxBatchSize: number;
  /** Initial weights, batch order and dropout masks all follow from it. */
  seed: number;
  /** Tokens per chunk of the LM-head loss; undefined: about 32 MB of logits. */
  lossChunk: number | undefined;
}

/**
 * The gates' rate multiple. Measured on the default backbone (d=128, 4 layers) and d=256/4
 * layers, recall and classification files at the auto rules (bench/defaults.bench.ts; see the
 * table in auto.ts): see GATE_MEASUREMENTS there.
 */
export const GATE_LR_SCALE = 10;

export const HYPERPARAMETER_DEFAULTS: TrainHyperparameters = {
  epochs: 3,
  learningRate: 1e-3,
  warmup: { ratio: 0.03 },
  minLrRatio: 0.1,
  weightDecay: 0.01,
  maxGradNorm: 1,
  batchSize: undefined,
  microBatches: 1,
  gateLrScale: GATE_LR_SCALE,
  tokenBudget: 4096,
  maxBatchSize: Number.POSITIVE_INFINITY,
  seed: 0,
  lossChunk: undefined,
};

/** A side-net config, or a preset resolved against the backbone (config.ts). */
export type SideNetChoice =
  | SideNetConfigInput
  | { preset: 'lst'; overrides?: Partial<SideNetConfigInput> }
  | { preset: 'xladder'; delta: number; overrides?: Partial<SideNetConfigInput> };

export function sideNetInput(choice: SideNetChoice, backbone: BackboneConfig): SideNetConfigInput {
  if (!('preset' in choice)) return choice;
  return choice.preset === 'lst'
    ? lstPreset(backbone, choice.overrides)
    : xladderPreset(backbone, choice.delta, choice.overrides);
}

/** One finished optimizer update, as the progress callback sees it. */
export interface TrainProgress {
  step: number;
  totalSteps: number;
  /** 1-based epoch of the update's last micro-batch. */
  epoch: number;
  /** Token-weighted loss over the update's micro-batches. */
  loss: number;
  /** Share of the update's target tokens the side net predicted exactly (argmax). */
  tokenAccuracy: number;
  /** The validation sample's loss and token accuracy, at updates that evaluated it. */
  valid?: { loss: number; tokenAccuracy: number };
  gradNorm: number;
  lr: number;
  /** Real tokens trained on so far (all epochs). */
  tokens: number;
  /** Over this process's part of the run (a resumed run counts from its restart). */
  tokensPerSecond: number;
  etaSeconds: number;
}

export interface CheckpointPolicy {
  sink: CheckpointSink;
  /** Save after every N updates. */
  everySteps?: number;
  /** Save when this long has passed since the last save (checked after each update). */
  everySeconds?: number;
}

export interface TrainSideNetOptions {
  /** Hugging Face model directory of the backbone. */
  modelDir: string;
  /** Where built backbones are cached (buildBackbone). */
  buildCacheDir: string;
  sideNet: SideNetChoice;
  train: readonly TrainingExample[];
  validation?: readonly TrainingExample[];
  /** Classification label set; default: the train examples' classLabels, sorted. */
  labels?: readonly string[];
  hyperparameters?: Partial<TrainHyperparameters>;
  backbone?: BackboneBuildChoice;
  /** Options of every onnxruntime session (provider, threads). */
  session?: Partial<SessionOptions>;
  checkpoint?: CheckpointPolicy;
  activationCache?: ActivationCacheOptions;
  /**
   * Evaluate `validation` every `everySteps` updates on a fixed sample of it (at most
   * `sampleExamples` examples), reported through onProgress; the whole set is evaluated at the end
   * either way. Undefined: the end only.
   */
  evaluation?: { everySteps: number; sampleExamples?: number };
  /** How the backbone pass and the side step share the process (default: phased, windows of up to 32 micro-batches and 2 GiB). */
  taps?: TapSchedule;
  onProgress?: (p: TrainProgress) => void | Promise<void>;
  /**
   * Awaited before each unit of work: every micro-batch's side step, every backbone pass (staged,
   * evaluated or cached) and every evaluation batch. A worker passes its compute gate's yield
   * (serving/gate.ts TrainingTurns) so that a waiting request runs before the next unit.
   */
  yieldPoint?: () => Promise<void>;
  /** Stops between updates: a checkpoint is saved (when a sink is set), then TrainingAbortedError. */
  signal?: AbortSignal;
}

/** Hyperparameters with defaults filled, every problem reported at once. */
export function resolveHyperparameters(input: Partial<TrainHyperparameters> = {}): TrainHyperparameters {
  const h = { ...HYPERPARAMETER_DEFAULTS, ...input } satisfies TrainHyperparameters;
  const bad: string[] = [];
  const positiveInt = (name: keyof TrainHyperparameters, v: number) => {
    if (!Number.isInteger(v) || v < 1) bad.push(`${name} must be a positive integer, got ${v}`);
  };
  positiveInt('epochs', h.epochs);
  positiveInt('microBatches', h.microBatches);
  if (h.batchSize !== undefined) {
    positiveInt('batchSize', h.batchSize);
    if (h.microBatches !== 1) bad.push(`batchSize and microBatches ${h.microBatches} cannot both be set`);
  }
  if (!(h.gateLrScale > 0 && Number.isFinite(h.gateLrScale)))
    bad.push(`gateLrScale must be > 0, got ${h.gateLrScale}`);
  positiveInt('tokenBudget', h.tokenBudget);
  if (!(h.maxBatchSize >= 1)) bad.push(`maxBatchSize must be >= 1, got ${h.maxBatchSize}`);
  if (!(h.learningRate > 0 && Number.isFinite(h.learningRate)))
    bad.push(`learningRate must be > 0, got ${h.learningRate}`);
  if ('steps' in h.warmup) {
    if (!Number.isInteger(h.warmup.steps) || h.warmup.steps < 0)
      bad.push(`warmup.steps must be an integer >= 0, got ${h.warmup.steps}`);
  } else if (!(h.warmup.ratio >= 0 && h.warmup.ratio <= 1)) {
    bad.push(`warmup.ratio must be in [0, 1], got ${h.warmup.ratio}`);
  }
  if (!(h.minLrRatio >= 0 && h.minLrRatio <= 1))
    bad.push(`minLrRatio must be in [0, 1], got ${h.minLrRatio}`);
  if (!(h.weightDecay >= 0)) bad.push(`weightDecay must be >= 0, got ${h.weightDecay}`);
  if (!(h.maxGradNorm > 0)) bad.push(`maxGradNorm must be > 0 (Infinity: no clipping), got ${h.maxGradNorm}`);
  if (!Number.isSafeInteger(h.seed)) bad.push(`seed must be a safe integer, got ${h.seed}`);
  if (h.lossChunk !== undefined && !(Number.isInteger(h.lossChunk) && h.lossChunk > 0))
    bad.push(`lossChunk must be a positive integer, got ${h.lossChunk}`);
  if (bad.length) throw new RangeError(`hyperparameters: ${bad.join('; ')}`);
  return h;
}

/**
 * Refuse examples the graphs cannot take (the data module builds valid ones; this guards the
 * boundary): token ids past the vocabulary, labels neither a token nor ignored, no target.
 */
export function checkExamples(examples: readonly TrainingExample[], what: string, vocab: number): void {
  const bad: string[] = [];
  let count = 0;
  const report = (msg: string) => {
    if (count++ < 10) bad.push(msg);
  };
  if (examples.length === 0) report(`no ${what} examples`);
  for (const [i, e] of examples.entries()) {
    const where = `${what} example ${i} (line ${e.line})`;
    if (e.inputIds.length === 0 || e.inputIds.length !== e.labels.length) {
      report(`${where}: ${e.inputIds.length} inputs and ${e.labels.length} labels`);
      continue;
    }
    const id = e.inputIds.findIndex((t) => !(t >= 0 && t < vocab));
    if (id >= 0)
      report(`${where}: input token ${e.inputIds[id]} at ${id} is outside the vocabulary (${vocab})`);
    let targets = 0;
    for (const [t, l] of e.labels.entries()) {
      if (l === -100) continue;
      targets++;
      if (!(l >= 0 && l < vocab)) report(`${where}: label ${l} at ${t} is outside the vocabulary (${vocab})`);
    }
    if (targets === 0) report(`${where}: no labelled token`);
  }
  if (count) {
    const more = count > bad.length ? `; ... and ${count - bad.length} more` : '';
    throw new RangeError(`refusing to train: ${bad.join('; ')}${more}`);
  }
}
