export { decodeHalf, encodeHalf, fromHalfBits, HALF_MAX, toHalfBits } from '../../util/half.ts';
export {
  ActivationCache,
  type ActivationCacheOptions,
  type ActivationCacheReport,
  activationBytes,
} from './activation-cache.ts';
export { ActivationSource, TAP_SCHEDULE_DEFAULTS, type TapSchedule } from './activations.ts';
export {
  BASE_LEARNING_RATE,
  type ResolvedTraining,
  resolveTraining,
  type TrainingRequest,
  type TrainingSize,
} from './auto.ts';
export { type BackboneBuildChoice, BackbonePass, BackbonePlan, loadLmHead } from './backbone-pass.ts';
export {
  CHECKPOINT_FORMAT,
  type CheckpointContents,
  decodeCheckpoint,
  encodeCheckpoint,
} from './checkpoint.ts';
export {
  type EvalContext,
  evaluateClassification,
  evaluateLoss,
  evaluateTokens,
  SideEvaluator,
} from './evaluate.ts';
export {
  type CheckpointPolicy,
  checkExamples,
  HYPERPARAMETER_DEFAULTS,
  resolveHyperparameters,
  type SideNetChoice,
  sideNetInput,
  type TrainHyperparameters,
  type TrainProgress,
  type TrainSideNetOptions,
} from './options.ts';
export {
  manifestTraining,
  TrainingAbortedError,
  type TrainResult,
  type TrainSummary,
  toAdapterWeights,
} from './result.ts';
export { type LrSchedule, learningRateAt, type Warmup, warmupSteps } from './schedule.ts';
export { type CheckpointSink, checkpointStoreSink, directorySink, type SavedCheckpoint } from './sinks.ts';
export { TapStage } from './tap-stage.ts';
export { trainSideNet } from './train.ts';
