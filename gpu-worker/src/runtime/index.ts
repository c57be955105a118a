export {
  availableProviders,
  createSession,
  type ExecutionProvider,
  type Feeds,
  Session,
  type SessionOptions,
} from './session.ts';
export { f32, f64, i64, type Tensor, tensor } from './tensor.ts';
export {
  type StateArray,
  type TrainModels,
  TrainRunner,
  type TrainRunnerOptions,
} from './train-runner.ts';
