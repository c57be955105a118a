export { collectGarbage, MALLOC_ENV, TRAINING_SESSION } from './memory.ts';
export {
  availableProviders,
  createSession,
  type ExecutionProvider,
  FeedError,
  type Feeds,
  type IoSpec,
  providerProblem,
  Session,
  type SessionOptions,
} from './session.ts';
export {
  bool,
  checkShape,
  f16,
  f32,
  f64,
  i32,
  i64,
  type Tensor,
  type TensorData,
  type TensorType,
  tensor,
  toArray,
  toScalar,
  u8,
  zeros,
} from './tensor.ts';
export {
  type StateArray,
  type TrainModels,
  TrainRunner,
  type TrainRunnerOptions,
} from './train-runner.ts';
