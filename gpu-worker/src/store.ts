import { type AdapterStore, FsAdapterStore, S3AdapterStore, s3OptionsFromEnv } from '@ladder/adapters';

/**
 * The worker's adapter store: an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO) when
 * LADDER_S3_BUCKET is set (the LADDER_S3_* variables, see README), else the embedded filesystem
 * store under LADDER_DATA_DIR.
 */
export function openAdapterStore(
  dataDir: string,
  backboneFingerprint: string,
  env: Record<string, string | undefined> = process.env,
): AdapterStore {
  const owner = { tenant: 'system', backboneFingerprint };
  if (env.LADDER_S3_BUCKET) return new S3AdapterStore({ ...s3OptionsFromEnv(env), ...owner });
  return new FsAdapterStore({ dataDir, ...owner });
}
