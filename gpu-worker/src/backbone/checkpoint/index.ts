export { loadConfig, parseConfig, SUPPORTED_ARCHITECTURES } from './config.ts';
export { CheckpointError, type CheckpointProblem } from './errors.ts';
export { expectedTensors, expectTensors } from './expect.ts';
export { checkpointFingerprint } from './fingerprint.ts';
export { MAX_HEADER_BYTES } from './safetensors.ts';
export {
  type CheckpointSource,
  findWeightFiles,
  INDEX_FILE,
  type OpenOptions,
  openCheckpoint,
  SINGLE_FILE,
} from './source.ts';
