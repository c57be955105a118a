import { z } from 'zod';
import { SafeId, Sha256Hex } from './ids.ts';
import { SideNetConfig } from './side-net.ts';

/** Bumped on any change a reader of an older version could misread. */
export const ADAPTER_FORMAT_VERSION = 1;

/** safetensors dtypes the adapter format accepts (little-endian, as safetensors stores them). */
export const TensorDtype = z.enum(['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL']);
export type TensorDtype = z.infer<typeof TensorDtype>;

export const TensorInfo = z.strictObject({
  name: z.string().min(1).max(512),
  dtype: TensorDtype,
  shape: z.array(
    z
      .number()
      .int()
      .min(0)
      .max(2 ** 31),
  ),
});
export type TensorInfo = z.infer<typeof TensorInfo>;

export const TrainingSummary = z.strictObject({
  job_id: SafeId,
  steps: z.number().int().min(0),
  /** Training tokens seen, all epochs together. */
  tokens: z.number().int().min(0),
  final_losses: z.strictObject({
    train: z.number().nonnegative(),
    validation: z.number().nonnegative().nullable().default(null),
  }),
});
export type TrainingSummary = z.infer<typeof TrainingSummary>;

/**
 * What sits next to an adapter's weights (`manifest.json`). Written last, so its presence is
 * what makes a version visible; validated on every read, because a store is a boundary.
 */
export const AdapterManifest = z.strictObject({
  format: z.literal('ladder.adapter'),
  format_version: z.literal(ADAPTER_FORMAT_VERSION),
  adapter_id: SafeId,
  tenant: SafeId,
  name: z.string().min(1).max(256),
  version: z.number().int().positive().max(1_000_000),
  created_at: z.iso.datetime(),
  backbone: z.strictObject({
    /** Human-readable backbone name, e.g. `qwen2.5-0.5b-q4`. */
    name: z.string().min(1).max(256),
    /** sha256 of the backbone's config and quantized weights: an adapter runs only on this one. */
    fingerprint: Sha256Hex,
  }),
  side_net: SideNetConfig,
  tensors: z
    .array(TensorInfo)
    .min(1)
    .refine((ts) => new Set(ts.map((t) => t.name)).size === ts.length, 'tensor names must be unique'),
  weights: z.strictObject({
    format: z.literal('safetensors'),
    sha256: Sha256Hex,
    size_bytes: z.number().int().positive(),
  }),
  training: TrainingSummary,
});
export type AdapterManifest = z.infer<typeof AdapterManifest>;

/** One training checkpoint's record (`step-N.json`, and `latest.json` points at the newest). */
export const CheckpointRecord = z.strictObject({
  format_version: z.literal(ADAPTER_FORMAT_VERSION),
  tenant: SafeId,
  job_id: SafeId,
  step: z.number().int().min(0).max(1e12),
  sha256: Sha256Hex,
  size_bytes: z.number().int().min(0),
  created_at: z.iso.datetime(),
  /** Small, trainer-defined facts (epoch, data cursor, rng state); never tensors. */
  metadata: z.record(z.string().max(128), z.string().max(4096)).default({}),
});
export type CheckpointRecord = z.infer<typeof CheckpointRecord>;
