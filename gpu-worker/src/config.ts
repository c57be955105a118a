import { createHmac } from 'node:crypto';
import { DEV_SIGNING_SECRET, describeIssues, WORKER_ID_PATTERN } from '@ladder/schemas';
import { z } from 'zod';

const int = (min: number, max: number, dflt: number) =>
  z.coerce.number().int().min(min).max(max).default(dflt);
const bool = (dflt: boolean) =>
  z
    .enum(['true', 'false', '1', '0'])
    .default(dflt ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1');

/** The shared secret's laptop default; a worker reachable beyond 127.0.0.1 must set its own. */
export const DEV_WORKER_SECRET = 'ladder-local-dev-secret';

/**
 * Worker configuration, read from the environment; every default runs on a laptop CPU with the
 * embedded filesystem store under `.data/`. Without LADDER_BACKBONE_DIR the worker starts, answers
 * health and metrics, and reports not-ready: it has nothing to serve.
 */
export const WorkerConfig = z.object({
  LADDER_WORKER_HOST: z.string().default('127.0.0.1'),
  LADDER_WORKER_PORT: int(0, 65535, 8788),
  /** How this worker names itself in heartbeats. */
  LADDER_WORKER_ID: z.string().regex(WORKER_ID_PATTERN).default('worker-local'),
  /** The URL the edge should call; default http://HOST:PORT as bound. */
  LADDER_WORKER_URL: z.url().optional(),
  LADDER_EXECUTION_PROVIDER: z.enum(['cpu', 'cuda', 'webgpu']).default('cpu'),
  /** Threads inside one ORT op; 0 lets onnxruntime pick. */
  LADDER_INTRA_OP_THREADS: int(0, 1024, 0),

  /** A Hugging Face model directory (config.json, safetensors, tokenizer.json). */
  LADDER_BACKBONE_DIR: z.string().min(1).optional(),
  /** Human-readable backbone name in manifests and heartbeats; default the directory's name. */
  LADDER_BACKBONE_NAME: z.string().min(1).max(256).optional(),
  /** Built ONNX backbones, one folder per checkpoint fingerprint and build options. */
  LADDER_CACHE_DIR: z.string().min(1).default('.data/build-cache'),
  /** The FsAdapterStore root (adapters, checkpoints, datasets) and the worker's job records. */
  LADDER_DATA_DIR: z.string().min(1).default('.data/worker'),

  /**
   * This worker's own HMAC secret: deriveWorkerSecret(edge master, LADDER_WORKER_ID)
   * (schemas/src/signing.ts); `npm start` derives it from the edge's development master.
   */
  LADDER_WORKER_SECRET: z.string().min(16).default(DEV_WORKER_SECRET),
  /** Where heartbeats go (POST {EDGE}/internal/v1/workers/heartbeat); unset: none are sent. */
  LADDER_EDGE_URL: z.url().optional(),
  LADDER_HEARTBEAT_MS: int(100, 3_600_000, 10_000),
  /** The largest signed request body the worker reads (a longer one is refused with 413). */
  LADDER_MAX_REQUEST_BYTES: int(1024, 1_073_741_824, 8 * 1024 * 1024),

  /** Sequences decoded together in one backbone step. */
  LADDER_MAX_BATCH: int(1, 4096, 32),
  /** Prompt + max_tokens summed over the running batch (what its KV caches may grow to). */
  LADDER_MAX_BATCH_TOKENS: int(16, 16_777_216, 32_768),
  /** Requests waiting to join the batch, in all and per tenant; beyond: 503 with Retry-After. */
  LADDER_MAX_QUEUE: int(1, 1_000_000, 256),
  LADDER_MAX_QUEUE_PER_TENANT: int(1, 1_000_000, 64),
  /** With an idle batch, wait this long for more arrivals so they prefill together. */
  LADDER_BATCH_WAIT_MS: int(0, 10_000, 0),
  /** Ready adapter tensors kept in memory (LRU over a byte budget). */
  LADDER_ADAPTER_CACHE_MB: int(1, 1_048_576, 512),
  /** Prompt KV kept for shared prefill (0 = off). */
  LADDER_PREFIX_CACHE_MB: int(0, 1_048_576, 64),

  /** Estimated training memory a job may take; a job that needs more is refused up front. */
  LADDER_MEMORY_BUDGET_MB: int(16, 16_777_216, 4096),
  LADDER_MAX_TRAINING_JOBS: int(1, 64, 1),
  LADDER_CHECKPOINT_EVERY_STEPS: int(1, 1_000_000, 50),
  LADDER_CHECKPOINT_EVERY_S: int(1, 86_400, 60),
  /** Training steps run back to back while no request waits; serving goes first otherwise. */
  LADDER_TRAIN_STEPS_PER_SLICE: int(1, 10_000, 1),
  /** Progress events every N optimizer steps (the last step and checkpoints always report). */
  LADDER_PROGRESS_EVERY_STEPS: int(1, 1_000_000, 1),
  /** Keep the activation cache of later epochs (trainer option). */
  LADDER_ACTIVATION_CACHE: bool(true),
});
export type WorkerConfig = z.infer<typeof WorkerConfig>;

const isLoopback = (host: string) =>
  host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);

/**
 * The secrets anyone can read in this repository: the worker's laptop default and what
 * deriveWorkerSecret gives from the edge's development master for this id (the same HMAC as
 * schemas/src/signing.ts, computed synchronously here).
 */
function isDevSecret(secret: string, workerId: string): boolean {
  const derived = createHmac('sha256', DEV_SIGNING_SECRET)
    .update(`ladder worker v1\n${workerId}`)
    .digest('hex');
  return secret === DEV_WORKER_SECRET || secret === derived;
}

export function loadWorkerConfig(env: Record<string, string | undefined> = process.env): WorkerConfig {
  const parsed = WorkerConfig.safeParse(env);
  if (!parsed.success) throw new Error(`invalid gpu-worker configuration: ${describeIssues(parsed.error)}`);
  refuseDevSecretBeyondLoopback(parsed.data);
  return parsed.data;
}

/** A worker bound beyond 127.0.0.1 must not accept requests signed with a public secret. */
export function refuseDevSecretBeyondLoopback(c: WorkerConfig): void {
  if (isLoopback(c.LADDER_WORKER_HOST) || !isDevSecret(c.LADDER_WORKER_SECRET, c.LADDER_WORKER_ID)) return;
  throw new Error(
    `invalid gpu-worker configuration: LADDER_WORKER_SECRET is a development default, and LADDER_WORKER_HOST ` +
      `${c.LADDER_WORKER_HOST} is reachable beyond this machine; set LADDER_WORKER_SECRET to this worker's own secret`,
  );
}
