import type { TensorInput } from '@ladder/adapters';
import type { SideNetConfig, TrainingSummary } from '@ladder/schemas';
import type { SideNetShape } from '../config.ts';
import type { ClassificationMetrics } from '../data/index.ts';
import { sideNetParams } from '../params.ts';
import type { ActivationCacheReport } from './activation-cache.ts';

export interface TrainSummary {
  /** Optimizer updates taken (all of them, across a resume). */
  steps: number;
  epochs: number;
  batchesPerEpoch: number;
  /** Real tokens of one pass over the training set. */
  tokensPerEpoch: number;
  /** Real tokens trained on. */
  tokensSeen: number;
  /** What a job is billed for: tokens per epoch x epochs. */
  billableTokens: number;
  /** Token-weighted mean loss over the last epoch. */
  finalTrainLoss: number;
  finalEvalLoss: number | null;
  /** Token accuracy over the last epoch (argmax = label, target-weighted). */
  finalTrainTokenAccuracy: number;
  /** Token accuracy over the whole validation set with the final weights. */
  finalEvalTokenAccuracy: number | null;
  /** Examples per optimizer update (batchSize), or null when updates took packed micro-batches. */
  batchSize: number | null;
  /** Classification validation sets only: accuracy over the label set (argmin summed loss). */
  accuracy: ClassificationMetrics | null;
  /** The checkpoint step this run started from, if it resumed. */
  resumedFromStep: number | null;
  activationCache: ActivationCacheReport;
  /** Anything a reader of the run should know (e.g. a resume that could not be bit-exact). */
  notes: string[];
}

export interface TrainResult {
  /** The trained side net, by parameter name (sideNetParams order). */
  params: Record<string, Float32Array>;
  sideNet: SideNetConfig;
  shape: SideNetShape;
  /** The classification label set, when the data had one. */
  labels: string[] | null;
  summary: TrainSummary;
  backbone: { fingerprint: string; buildKey: string };
  /** The weights as AdapterStore.put takes them. */
  toAdapterWeights(): Record<string, TensorInput>;
}

/** Side-net weights as safetensors tensors (F32), in parameter order; every one must be there. */
export function toAdapterWeights(
  shape: SideNetShape,
  params: Readonly<Record<string, Float32Array>>,
): Record<string, TensorInput> {
  const out: Record<string, TensorInput> = {};
  const missing: string[] = [];
  for (const p of sideNetParams(shape)) {
    const data = params[p.name];
    if (!data) missing.push(p.name);
    else out[p.name] = { dtype: 'F32', shape: p.shape, data };
  }
  if (missing.length) throw new Error(`toAdapterWeights: missing ${missing.join(', ')}`);
  return out;
}

/** The manifest's `training` block for this run. */
export function manifestTraining(summary: TrainSummary, jobId: string): TrainingSummary {
  return {
    job_id: jobId,
    steps: summary.steps,
    tokens: summary.tokensSeen,
    final_losses: { train: summary.finalTrainLoss, validation: summary.finalEvalLoss },
  };
}

/** Training stopped on its AbortSignal, between two updates. */
export class TrainingAbortedError extends Error {
  override name = 'TrainingAbortedError';
  constructor(
    /** Updates taken when it stopped. */
    readonly step: number,
    /** The step of the checkpoint saved on the way out (or earlier); null: none. */
    readonly checkpointStep: number | null,
    cause?: unknown,
  ) {
    super(
      `training stopped after ${step} updates${checkpointStep === null ? ' (no checkpoint)' : `; checkpoint at step ${checkpointStep}`}`,
      { cause },
    );
  }
}
