export { type BlobPage, type BlobStore, listAll } from './src/blob.ts';
export {
  AdapterCache,
  type AdapterCacheOptions,
  type AdapterLoader,
  type AdapterRef,
  CACHE_DEFAULTS,
  type CacheStats,
  type Lease,
} from './src/cache.ts';
export { type Checkpoint, CheckpointStore } from './src/checkpoints.ts';
export { DatasetStore } from './src/datasets.ts';
export {
  AdapterError,
  type AdapterErrorCode,
  AlreadyExistsError,
  BackboneMismatchError,
  CacheFullError,
  IntegrityError,
  InvalidArgumentError,
  isAdapterError,
  NotFoundError,
  StoreUnavailableError,
} from './src/errors.ts';
export { FsBlobStore, type FsBlobStoreOptions } from './src/fs-blob.ts';
export { backboneFingerprint, canonicalJson, sha256Hex } from './src/hash.ts';
export {
  AdapterVersion,
  adapterKey,
  adapterPrefix,
  checkpointPrefix,
  datasetKey,
  manifestKey,
  SafeId,
  SafeName,
  tenantPrefix,
  weightsKey,
} from './src/keys.ts';
export { type HostTensor, typedArrayLoader } from './src/loaders.ts';
export { isTransient, RETRY_DEFAULTS, type RetryOptions } from './src/retry.ts';
export { S3BlobStore, type S3BlobStoreOptions } from './src/s3-blob.ts';
export { resolveS3Options, S3_DEFAULTS, type S3Options, s3OptionsFromEnv } from './src/s3-options.ts';
export {
  type DecodedSafetensors,
  DTYPE_BYTES,
  decodeSafetensors,
  encodeSafetensors,
  numel,
  type RawTensor,
  SafetensorsError,
  type TensorData,
  type TensorInput,
  tensorView,
} from './src/safetensors.ts';
export {
  type AdapterPage,
  AdapterStore,
  type AdapterStoreOptions,
  type PutAdapterInput,
  STORE_DEFAULTS,
  type VerifiedAdapter,
} from './src/store.ts';
export {
  FsAdapterStore,
  type FsAdapterStoreOptions,
  S3AdapterStore,
  type S3AdapterStoreOptions,
} from './src/stores.ts';
