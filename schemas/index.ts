export {
  ADAPTER_FORMAT_VERSION,
  AdapterManifest,
  CheckpointRecord,
  TensorDtype,
  TensorInfo,
  TrainingSummary,
} from './src/adapter-manifest.ts';
export { ApiError, apiError, describeIssues } from './src/errors.ts';
export { HealthStatus } from './src/health.ts';
export { SafeId, SafeName, Sha256Hex } from './src/ids.ts';
export { SideNetConfig, type SideNetConfigInput } from './src/side-net.ts';
export const LADDER_VERSION = '0.1.0';
