export {
  BATCH_PLAN_DEFAULTS,
  type Batch,
  type BatchPlanOptions,
  collate,
  type EpochSteps,
  planEpoch,
  planEpochSteps,
} from './batching.ts';
export { chatTokens } from './chat-turns.ts';
export { DatasetError, ExampleError } from './errors.ts';
export {
  buildExample,
  classificationCandidates,
  classificationCompletion,
  classificationExample,
  classificationPrompt,
  collectLabels,
  completionExample,
  type ExampleOptions,
} from './examples.ts';
export {
  BatchLoader,
  type BatchLoaderOptions,
  type DataCursor,
  type LoadedBatch,
  type LoaderState,
} from './loader.ts';
export {
  argminLabel,
  type ClassificationMetrics,
  classificationAccuracy,
  type ScoredExample,
} from './metrics.ts';
export { mixSeed, permutation } from './order.ts';
export { PREPARE_DEFAULTS, type PreparedDataset, type PrepareOptions, prepareDataset } from './prepare.ts';
export { toTrainingExample } from './sequence.ts';
export { type SplitResult, splitValidation, type ValidationSplit } from './split.ts';
export { type DataTokenizer, IGNORE_INDEX, type TrainingExample, type Truncation } from './types.ts';
