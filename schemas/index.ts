export {
  ADAPTER_FORMAT_VERSION,
  AdapterManifest,
  CheckpointRecord,
  TensorDtype,
  TensorInfo,
  TrainingSummary,
} from './src/adapter-manifest.ts';
export {
  ChatLine,
  ChatRole,
  ChatTurn,
  ClassificationLine,
  CompletionLine,
  DATASET_LIMITS,
  DATASET_LINE_SCHEMAS,
  DatasetFormat,
  type DatasetLineError,
  type DatasetRecord,
  type DatasetValidation,
  type DatasetValidationOptions,
  DatasetValidator,
  detectDatasetFormat,
  formatDatasetError,
  validateDataset,
} from './src/dataset.ts';
export { ApiError, apiError, describeIssues } from './src/errors.ts';
export { HealthStatus } from './src/health.ts';
export { SafeId, SafeName, Sha256Hex } from './src/ids.ts';
export { SideNetConfig, type SideNetConfigInput } from './src/side-net.ts';
export const LADDER_VERSION = '0.1.0';
export {
  AdapterRef,
  ChatMessage,
  FinishReason,
  GenerateChunk,
  GenerateRequest,
  GenerateResponse,
  Heartbeat,
  Hyperparameters,
  JobEvent,
  JobStatus,
  Prompt,
  SamplingParams,
  ScoreRequest,
  ScoreResponse,
  StartJobRequest,
  StartJobResponse,
  TrainingMethod,
  Usage,
} from './src/internal.ts';
export {
  REPLAY_WINDOW_S,
  SIGNATURE_HEADER,
  sha256Hex,
  signRequest,
  TIMESTAMP_HEADER,
  type VerifyResult,
  verifyRequest,
} from './src/signing.ts';
