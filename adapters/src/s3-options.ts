import { describeIssues } from '@ladder/schemas';
import { z } from 'zod';
import { InvalidArgumentError } from './errors.ts';
import { RETRY_DEFAULTS, type RetryOptions } from './retry.ts';

/**
 * Where and how to reach an S3-compatible bucket. The same options serve AWS S3 (no endpoint,
 * a real region), Cloudflare R2 (endpoint `https://<account>.r2.cloudflarestorage.com`, region
 * `auto`) and MinIO (its URL, `forcePathStyle: true`).
 */
export interface S3Options extends RetryOptions {
  bucket: string;
  /** Omit for AWS S3; required for R2, MinIO and other S3-compatible servers. */
  endpoint?: string;
  region: string;
  /** Key prefix inside the bucket, e.g. `ladder/`; '' for the bucket root. */
  prefix: string;
  /** Path-style URLs (`endpoint/bucket/key`): MinIO and most local servers need them. */
  forcePathStyle: boolean;
  /** Omit to use the SDK's default chain (environment, profile, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Objects larger than this go up as multipart uploads (S3 caps a single PUT at 5 GB). */
  multipartThresholdBytes: number;
  /** Part size; S3 requires at least 5 MiB for every part but the last. */
  partSizeBytes: number;
  /** Parts in flight at once. */
  partConcurrency: number;
  /**
   * How create-only writes are enforced: `if-none-match` (AWS S3 since 2024, R2, MinIO),
   * `read-back` (check before, write, read back and compare: for servers that ignore the header),
   * or `auto`: probe the server once and pick.
   */
  conditionalWrites: 'auto' | 'if-none-match' | 'read-back';
  /** TCP connect timeout per attempt. */
  connectTimeoutMs: number;
  maxSockets: number;
}

export const S3_DEFAULTS = {
  ...RETRY_DEFAULTS,
  region: 'us-east-1',
  prefix: '',
  forcePathStyle: false,
  multipartThresholdBytes: 8 * 1024 * 1024,
  partSizeBytes: 8 * 1024 * 1024,
  partConcurrency: 4,
  conditionalWrites: 'auto',
  connectTimeoutMs: 5_000,
  maxSockets: 32,
} satisfies Omit<S3Options, 'bucket'>;

export type S3OptionsInput = Partial<S3Options> & Pick<S3Options, 'bucket'>;

/** S3 (and fauxqs) refuse parts under 5 MiB, except the last. */
const MIN_PART_BYTES = 5 * 1024 * 1024;
const PREFIX = /^([A-Za-z0-9][A-Za-z0-9._-]*\/)*$/;

/** Fills defaults and refuses options that would fail later in a less obvious way. */
export function resolveS3Options(input: S3OptionsInput): S3Options {
  const o = { ...S3_DEFAULTS, ...input } satisfies S3Options;
  const problems: string[] = [];
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(o.bucket))
    problems.push(`bucket ${JSON.stringify(o.bucket)} is not a valid bucket name`);
  if (o.prefix && !o.prefix.endsWith('/')) o.prefix = `${o.prefix}/`;
  if (!PREFIX.test(o.prefix)) problems.push(`prefix ${JSON.stringify(o.prefix)} must be safe path segments`);
  if (o.endpoint !== undefined && !/^https?:\/\/[^/]+\/?$/.test(o.endpoint)) {
    problems.push(`endpoint ${JSON.stringify(o.endpoint)} must be http(s)://host[:port]`);
  }
  if (o.partSizeBytes < MIN_PART_BYTES || o.multipartThresholdBytes < o.partSizeBytes) {
    problems.push(
      `partSizeBytes must be >= ${MIN_PART_BYTES} (S3's minimum part) and <= multipartThresholdBytes`,
    );
  }
  for (const k of ['maxAttempts', 'partConcurrency', 'maxSockets', 'attemptTimeoutMs'] as const) {
    if (!(Number.isInteger(o[k]) && o[k] >= 1)) problems.push(`${k} must be an integer >= 1`);
  }
  if (problems.length) throw new InvalidArgumentError(`invalid S3 store options: ${problems.join('; ')}`);
  return o;
}

const Env = z.object({
  LADDER_S3_BUCKET: z.string().min(1),
  LADDER_S3_ENDPOINT: z.url().optional(),
  LADDER_S3_REGION: z.string().min(1).optional(),
  LADDER_S3_PREFIX: z.string().optional(),
  LADDER_S3_FORCE_PATH_STYLE: z.enum(['true', 'false', '1', '0']).optional(),
  LADDER_S3_ACCESS_KEY_ID: z.string().min(1).optional(),
  LADDER_S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  LADDER_S3_SESSION_TOKEN: z.string().min(1).optional(),
  LADDER_S3_CONDITIONAL_WRITES: z.enum(['auto', 'if-none-match', 'read-back']).optional(),
});

/** Reads `LADDER_S3_*` variables; errors name the variable. Credentials come as a pair or not at all. */
export function s3OptionsFromEnv(env: Record<string, string | undefined>): S3Options {
  const r = Env.safeParse(env);
  if (!r.success) throw new InvalidArgumentError(`invalid S3 configuration: ${describeIssues(r.error)}`);
  const e = r.data;
  if (!e.LADDER_S3_ACCESS_KEY_ID !== !e.LADDER_S3_SECRET_ACCESS_KEY) {
    throw new InvalidArgumentError(
      'invalid S3 configuration: set both LADDER_S3_ACCESS_KEY_ID and LADDER_S3_SECRET_ACCESS_KEY, or neither',
    );
  }
  const input: S3OptionsInput = { bucket: e.LADDER_S3_BUCKET };
  if (e.LADDER_S3_ENDPOINT) input.endpoint = e.LADDER_S3_ENDPOINT.replace(/\/$/, '');
  if (e.LADDER_S3_REGION) input.region = e.LADDER_S3_REGION;
  if (e.LADDER_S3_PREFIX !== undefined) input.prefix = e.LADDER_S3_PREFIX;
  if (e.LADDER_S3_FORCE_PATH_STYLE)
    input.forcePathStyle = ['true', '1'].includes(e.LADDER_S3_FORCE_PATH_STYLE);
  if (e.LADDER_S3_CONDITIONAL_WRITES) input.conditionalWrites = e.LADDER_S3_CONDITIONAL_WRITES;
  if (e.LADDER_S3_ACCESS_KEY_ID && e.LADDER_S3_SECRET_ACCESS_KEY) {
    input.credentials = {
      accessKeyId: e.LADDER_S3_ACCESS_KEY_ID,
      secretAccessKey: e.LADDER_S3_SECRET_ACCESS_KEY,
      ...(e.LADDER_S3_SESSION_TOKEN ? { sessionToken: e.LADDER_S3_SESSION_TOKEN } : {}),
    };
  }
  return resolveS3Options(input);
}
