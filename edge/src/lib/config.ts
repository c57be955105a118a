import { TenantLimits } from '@ladder/schemas';
import { z } from 'zod';

/**
 * The edge's settings, read from wrangler vars (and secrets) once per request and validated, so
 * a typo in wrangler.jsonc fails loudly at the first request instead of half-working.
 */
const Price = z.strictObject({
  prompt_per_1k: z.number().min(0),
  completion_per_1k: z.number().min(0),
  training_per_1k: z.number().min(0),
});
export type Price = z.infer<typeof Price>;

const EdgeConfig = z.object({
  adminToken: z.string().min(8),
  signingSecret: z.string().min(8),
  publicBaseUrl: z.url(),
  backbones: z.array(z.string().min(1)).min(1),
  prices: z.record(z.string(), Price).refine((p) => '*' in p, 'needs a "*" fallback entry'),
  defaultLimits: TenantLimits,
  jobLeaseS: z.coerce.number().int().min(1),
  jobMaxAttempts: z.coerce.number().int().min(1),
  heartbeatTtlS: z.coerce.number().int().min(1),
  workerTimeoutMs: z.coerce.number().int().min(1),
  fileMaxBytes: z.coerce.number().int().min(1),
});
export type EdgeConfig = z.infer<typeof EdgeConfig>;

const cache = new WeakMap<object, EdgeConfig>();

export function config(env: Env): EdgeConfig {
  const hit = cache.get(env);
  if (hit) return hit;
  const parsed = EdgeConfig.parse({
    adminToken: env.ADMIN_TOKEN,
    signingSecret: env.WORKER_SIGNING_SECRET,
    publicBaseUrl: env.PUBLIC_BASE_URL,
    backbones: env.BACKBONES,
    prices: env.PRICE_TABLE,
    defaultLimits: env.DEFAULT_LIMITS,
    jobLeaseS: env.JOB_LEASE_S,
    jobMaxAttempts: env.JOB_MAX_ATTEMPTS,
    heartbeatTtlS: env.HEARTBEAT_TTL_S,
    workerTimeoutMs: env.WORKER_TIMEOUT_MS,
    fileMaxBytes: env.FILE_MAX_BYTES,
  });
  cache.set(env, parsed);
  return parsed;
}

export function priceFor(cfg: EdgeConfig, backbone: string): Price {
  return cfg.prices[backbone] ?? cfg.prices['*']!;
}
