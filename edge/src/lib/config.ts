import { DEV_SIGNING_SECRET, TenantLimits } from '@ladder/schemas';
import type { MiddlewareHandler } from 'hono';
import { z } from 'zod';
import { ApiException } from './errors.ts';

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
  /** 'development' only in edge/.dev.vars (wrangler dev, the tests, npm start). */
  environment: z.string().min(1),
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
  promptMaxBytes: z.coerce.number().int().min(1),
});
export type EdgeConfig = z.infer<typeof EdgeConfig>;

/** Each setting's name in wrangler.jsonc / `wrangler secret put`, for error messages. */
const SETTING: Record<keyof EdgeConfig, string> = {
  environment: 'LADDER_ENV',
  adminToken: 'ADMIN_TOKEN',
  signingSecret: 'WORKER_SIGNING_SECRET',
  publicBaseUrl: 'PUBLIC_BASE_URL',
  backbones: 'BACKBONES',
  prices: 'PRICE_TABLE',
  defaultLimits: 'DEFAULT_LIMITS',
  jobLeaseS: 'JOB_LEASE_S',
  jobMaxAttempts: 'JOB_MAX_ATTEMPTS',
  heartbeatTtlS: 'HEARTBEAT_TTL_S',
  workerTimeoutMs: 'WORKER_TIMEOUT_MS',
  fileMaxBytes: 'FILE_MAX_BYTES',
  promptMaxBytes: 'PROMPT_MAX_BYTES',
};

/** Secrets published in this repository (edge/.dev.vars): fine on a laptop, never beyond it. */
const DEV_SECRETS: Partial<Record<keyof EdgeConfig, string>> = {
  adminToken: 'dev-admin-token',
  signingSecret: DEV_SIGNING_SECRET,
};

const misconfigured = (message: string) =>
  new ApiException(503, `The edge is misconfigured: ${message}`, 'server_error', 'edge_misconfigured');

const cache = new WeakMap<object, EdgeConfig>();

/** The settings, or a 503 naming what is wrong (a missing secret, a development default in production). */
export function config(env: Env): EdgeConfig {
  const hit = cache.get(env);
  if (hit) return hit;
  // LADDER_ENV, ADMIN_TOKEN and WORKER_SIGNING_SECRET are typed from edge/.dev.vars; deployed,
  // the secrets exist only once `wrangler secret put` set them.
  const input: Record<keyof EdgeConfig, unknown> = {
    environment: env.LADDER_ENV,
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
    promptMaxBytes: env.PROMPT_MAX_BYTES,
  };
  const result = EdgeConfig.safeParse(input);
  if (!result.success) {
    const bad = result.error.issues.map((i) => {
      const field = i.path[0] as keyof EdgeConfig;
      const key = SETTING[field] ?? String(field);
      return input[field] === undefined ? `${key} is not set` : `${key}: ${i.message}`;
    });
    throw misconfigured(`${bad.join('; ')} (wrangler.jsonc vars, or \`wrangler secret put\` for secrets).`);
  }
  const parsed = result.data;
  if (parsed.environment !== 'development') {
    for (const [key, dev] of Object.entries(DEV_SECRETS) as [keyof EdgeConfig, string][]) {
      if (parsed[key] === dev) {
        throw misconfigured(
          `${SETTING[key]} is the published development default, and LADDER_ENV is '${parsed.environment}'; ` +
            `set a secret of your own with \`wrangler secret put ${SETTING[key]}\`.`,
        );
      }
    }
  }
  cache.set(env, parsed);
  return parsed;
}

/** Every request checks the settings first, so a misconfigured edge answers nothing but the 503. */
export function requireConfig(): MiddlewareHandler<{ Bindings: Env }> {
  return async function requireConfig(c, next) {
    config(c.env);
    await next();
  };
}

export function priceFor(cfg: EdgeConfig, backbone: string): Price {
  return cfg.prices[backbone] ?? cfg.prices['*']!;
}
