import type { Hyperparameters } from '@ladder/schemas';
import type { PreparedDataset } from '../side-net/data/index.ts';
import {
  type ResolvedTraining,
  resolveTraining,
  type TrainHyperparameters,
} from '../side-net/trainer/index.ts';

/** Validation evaluations a run makes on its sample, about evenly spaced (the whole set at the end). */
const EVALUATIONS_PER_RUN = 10;

/** At most this many `metrics` events per run: every step below it, every k-th step above. */
export const MAX_METRICS_EVENTS = 500;

export interface JobTraining {
  /** What `'auto'` resolved to, as the `started` event reports it. */
  resolved: ResolvedTraining;
  hyperparameters: Partial<TrainHyperparameters>;
  /** Optimizer updates the run will take. */
  totalSteps: number;
  /** Evaluate the validation sample every this many updates. */
  evalEverySteps: number;
  /** Send a `metrics` event every this many updates. */
  metricsEverySteps: number;
}

/**
 * A job's hyperparameters as the trainer takes them, `'auto'` resolved from the training set's
 * size (trainer/auto.ts). The worker's JobRunner and bench/defaults both train through this.
 */
export function jobTraining(hp: Hyperparameters, trainExamples: number, seed: number): JobTraining {
  const resolved = resolveTraining({ examples: trainExamples }, hp);
  const perEpoch = Math.ceil(trainExamples / resolved.batch_size);
  const totalSteps = perEpoch * resolved.n_epochs;
  return {
    resolved,
    hyperparameters: {
      epochs: resolved.n_epochs,
      batchSize: resolved.batch_size,
      learningRate: resolved.learning_rate,
      warmup: { ratio: hp.warmup_ratio },
      tokenBudget: hp.batch_tokens,
      weightDecay: hp.weight_decay,
      maxGradNorm: hp.max_grad_norm,
      seed,
    },
    totalSteps,
    evalEverySteps: Math.max(1, Math.ceil(totalSteps / EVALUATIONS_PER_RUN)),
    metricsEverySteps: Math.max(1, Math.ceil(totalSteps / MAX_METRICS_EVENTS)),
  };
}

/**
 * The warning a job gets when some examples are longer than the context it trains with, or null:
 * how many, and what was done (data/sequence.ts: the prompt is cut from its start so the
 * completion stays whole; a completion that alone does not fit is cut at its end).
 */
export function contextWarning(
  what: 'training' | 'validation',
  stats: PreparedDataset['stats'],
  maxLength: number,
): string | null {
  const { truncatedPrompt: prompt, truncatedCompletion: completion } = stats;
  if (prompt + completion === 0) return null;
  const parts: string[] = [];
  if (prompt)
    parts.push(
      `${prompt} had their prompt truncated from the left (its first tokens dropped), keeping the whole completion`,
    );
  if (completion)
    parts.push(
      `${completion} had a completion longer than the context by itself: kept from one token before it, cut at its end (the eos and any later tokens are not trained)`,
    );
  const n = prompt + completion;
  return `${n} ${what} example${n === 1 ? ' is' : 's are'} longer than the ${maxLength}-token context: ${parts.join('; ')}`;
}
