import { z } from 'zod';
import { AdapterManifest } from './adapter-manifest.ts';
import { SafeId, Sha256Hex } from './ids.ts';
import { SideNetConfig } from './side-net.ts';

/**
 * The internal protocol between the edge and the GPU workers (DESIGN.md section 6b). Every
 * request either way is HMAC-signed (see signing.ts); bodies are validated with these schemas on
 * both sides.
 */

/** Sampling parameters, OpenAI-named. */
export const SamplingParams = z.strictObject({
  max_tokens: z.number().int().min(1).max(32_768).default(256),
  temperature: z.number().min(0).max(2).default(1),
  top_p: z.number().gt(0).max(1).default(1),
  top_k: z.number().int().min(0).max(1000).default(0),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .optional(),
  stop: z.array(z.string().min(1).max(256)).max(8).default([]),
});
export type SamplingParams = z.infer<typeof SamplingParams>;

export const ChatMessage = z.strictObject({
  role: z.enum(['system', 'user', 'assistant']),
  content: z.string().max(1_000_000),
});
export type ChatMessage = z.infer<typeof ChatMessage>;

/** What to run: text, or chat messages through the backbone's chat template. */
export const Prompt = z.union([
  z.strictObject({ text: z.string().max(1_000_000) }),
  z.strictObject({ messages: z.array(ChatMessage).min(1).max(1000) }),
]);
export type Prompt = z.infer<typeof Prompt>;

/** An adapter as the worker needs to fetch and verify it from the AdapterStore. */
export const AdapterRef = z.strictObject({
  tenant: SafeId,
  adapter_id: SafeId,
  version: z.number().int().positive(),
  /** sha256 of the weights: the worker refuses anything else. */
  sha256: Sha256Hex,
});
export type AdapterRef = z.infer<typeof AdapterRef>;

/** POST /internal/v1/generate — one completion; `adapter: null` runs the plain backbone. */
export const GenerateRequest = z.strictObject({
  request_id: SafeId,
  tenant: SafeId,
  adapter: AdapterRef.nullable(),
  prompt: Prompt,
  sampling: SamplingParams,
  stream: z.boolean().default(false),
  /**
   * Whose prompt-prefix cache entries this request may reuse: the tenant's own (absent or
   * 'tenant', the default: another tenant's prompts never speed this one up, so time to first
   * token says nothing about them), or those of every tenant that opted in ('shared').
   */
  prefix_cache: z.enum(['tenant', 'shared']).optional(),
  /** Narrows the scope further: only requests with the same salt share entries. */
  cache_salt: z.string().max(128).optional(),
});
export type GenerateRequest = z.infer<typeof GenerateRequest>;

export const Usage = z.strictObject({
  prompt_tokens: z.number().int().min(0),
  completion_tokens: z.number().int().min(0),
});
export type Usage = z.infer<typeof Usage>;

export const FinishReason = z.enum(['stop', 'length', 'eos', 'cancelled']);

export const GenerateResponse = z.strictObject({
  request_id: SafeId,
  text: z.string(),
  finish_reason: FinishReason,
  usage: Usage,
});
export type GenerateResponse = z.infer<typeof GenerateResponse>;

/** One server-sent event of a streamed generation (`data: <json>`); the last carries usage. */
export const GenerateChunk = z.strictObject({
  request_id: SafeId,
  delta: z.string(),
  finish_reason: FinishReason.nullable(),
  usage: Usage.optional(),
});
export type GenerateChunk = z.infer<typeof GenerateChunk>;

/** POST /internal/v1/score — one input, K adapters: the log-likelihood of `completion` under each. */
export const ScoreRequest = z.strictObject({
  request_id: SafeId,
  tenant: SafeId,
  prompt: Prompt,
  completion: z.string().min(1).max(100_000),
  adapters: z.array(AdapterRef.nullable()).min(1).max(64),
});
export type ScoreRequest = z.infer<typeof ScoreRequest>;

export const ScoreResponse = z.strictObject({
  request_id: SafeId,
  scores: z.array(
    z.strictObject({ adapter_id: SafeId.nullable(), logprob: z.number(), tokens: z.number().int() }),
  ),
  usage: Usage,
});
export type ScoreResponse = z.infer<typeof ScoreResponse>;

const auto = z.literal('auto');

/**
 * Training hyperparameters (public API names, defaults filled). `'auto'` values are resolved by
 * the worker when the job starts, from the dataset's size and token counts, and reported on the
 * job's `started` event (JobEvent.hyperparameters).
 */
export const Hyperparameters = z.strictObject({
  n_epochs: z.union([auto, z.number().int().min(1).max(100)]).default('auto'),
  /** Examples per optimizer step, whatever the micro-batches (batch_tokens) that carry them. */
  batch_size: z.union([auto, z.number().int().min(1).max(256)]).default('auto'),
  /** Times the side nets' base learning rate. */
  learning_rate_multiplier: z.union([auto, z.number().gt(0).max(100)]).default('auto'),
  /** An absolute peak learning rate; overrides learning_rate_multiplier when given. */
  learning_rate: z.number().gt(0).max(1).optional(),
  warmup_ratio: z.number().min(0).max(0.5).default(0.05),
  /** Tokens per micro-batch (padded B x T): the memory cap of one forward and backward. */
  batch_tokens: z.number().int().min(64).max(1_048_576).default(4096),
  weight_decay: z.number().min(0).max(1).default(0.01),
  max_grad_norm: z.number().gt(0).max(1000).default(1),
  /** Side width d_s = d / r. */
  reduction_factor: z.number().int().min(1).max(64).default(8),
  /** xLadder: tapped (and free) side layers; default a quarter of the backbone's layers. */
  xladder_depth: z.number().int().min(1).max(256).optional(),
  validation_fraction: z.number().min(0).max(0.5).default(0),
  /** Side blocks start random (scaled) or pruned from the backbone's blocks. */
  init: z.enum(['random', 'pruned']).default('random'),
});
export type Hyperparameters = z.infer<typeof Hyperparameters>;

export const TrainingMethod = z.strictObject({
  type: z.enum(['lst', 'xladder']),
  hyperparameters: Hyperparameters.default(Hyperparameters.parse({})),
});
export type TrainingMethod = z.infer<typeof TrainingMethod>;

/** POST /internal/v1/jobs — start (or, the same job id again, acknowledge) a training job. */
export const StartJobRequest = z.strictObject({
  job_id: SafeId,
  tenant: SafeId,
  /** Signed edge URL the worker GETs the JSONL training file from. */
  training_file_url: z.url(),
  validation_file_url: z.url().optional(),
  method: TrainingMethod,
  /** Name of the resulting adapter (the model id's suffix). */
  suffix: z.string().max(64).optional(),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .default(0),
  /** Where the worker POSTs signed JobEvents. */
  callback_url: z.url(),
  /** Lease generation: a re-dispatch carries a higher number; older ones are ignored. */
  attempt: z.number().int().min(1).default(1),
});
export type StartJobRequest = z.infer<typeof StartJobRequest>;

/** `paused`: stopped at a checkpoint by POST .../pause; a StartJobRequest with a higher attempt resumes it. */
export const JobStatus = z.enum(['queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled']);
export type JobStatus = z.infer<typeof JobStatus>;

export const StartJobResponse = z.strictObject({
  job_id: SafeId,
  status: JobStatus,
  /** The step it resumed from (0 for a fresh start). */
  resumed_from_step: z.number().int().min(0),
});
export type StartJobResponse = z.infer<typeof StartJobResponse>;

/**
 * Edge -> worker, POST /internal/v1/purge: delete what a worker keeps of one job after its model or
 * its training file was deleted: the cached copies of its training files and its activation cache,
 * and, with `adapter`, also the adapter (every version) and the job's checkpoints. Idempotent.
 */
export const PurgeRequest = z.strictObject({
  tenant: SafeId,
  job_id: SafeId,
  adapter: z.strictObject({ adapter_id: SafeId, version: z.number().int().positive() }).optional(),
});
export type PurgeRequest = z.infer<typeof PurgeRequest>;

export const PurgeResponse = z.strictObject({
  job_id: SafeId,
  /** Adapter versions that were visible before the purge. */
  adapter_versions: z.number().int().min(0),
  checkpoints: z.boolean(),
  datasets: z.boolean(),
});
export type PurgeResponse = z.infer<typeof PurgeResponse>;

/** The values a job trains with, `'auto'` resolved (on the `started` event). */
export const ResolvedTraining = z.strictObject({
  n_epochs: z.number().int().min(1),
  batch_size: z.number().int().min(1),
  learning_rate_multiplier: z.number().gt(0),
  learning_rate: z.number().gt(0),
});
export type ResolvedTraining = z.infer<typeof ResolvedTraining>;

/** One optimizer step's metrics (OpenAI's names); the `valid_*` ones where the step evaluated. */
export const StepMetrics = z.strictObject({
  step: z.number().int().min(0),
  /** Token-weighted mean loss of the step's examples. */
  train_loss: z.number(),
  /** Share of the step's completion tokens the side net predicted exactly (argmax). */
  train_mean_token_accuracy: z.number().min(0).max(1),
  /** On a sample of the validation set, every few steps. */
  valid_loss: z.number().optional(),
  valid_mean_token_accuracy: z.number().min(0).max(1).optional(),
  /** On the whole validation set, at the end. */
  full_valid_loss: z.number().optional(),
  full_valid_mean_token_accuracy: z.number().min(0).max(1).optional(),
});
export type StepMetrics = z.infer<typeof StepMetrics>;

/** Worker -> edge, POST callback_url: progress and the end of a job. `event_id` makes it idempotent. */
export const JobEvent = z.strictObject({
  event_id: SafeId,
  job_id: SafeId,
  tenant: SafeId,
  type: z.enum([
    'started',
    'progress',
    'metrics',
    'checkpoint',
    'warning',
    'paused',
    'succeeded',
    'failed',
    'cancelled',
  ]),
  created_at: z.iso.datetime(),
  message: z.string().max(4096).default(''),
  step: z.number().int().min(0).default(0),
  total_steps: z.number().int().min(0).default(0),
  epoch: z.number().min(0).default(0),
  loss: z.number().nullable().default(null),
  eval_loss: z.number().nullable().default(null),
  learning_rate: z.number().nullable().default(null),
  tokens_per_s: z.number().nullable().default(null),
  eta_s: z.number().nullable().default(null),
  /** `started`: what `'auto'` resolved to. */
  hyperparameters: ResolvedTraining.optional(),
  /** `metrics` and `checkpoint` events (and the final one): the step's metrics. */
  metrics: StepMetrics.optional(),
  /** Final event only: the published adapter. */
  adapter: AdapterManifest.optional(),
  /**
   * Final event only: billable training tokens, recorded once per job whatever the event ids.
   * `succeeded`: tokens x epochs; `cancelled`: the tokens trained before it stopped.
   */
  billed_training_tokens: z.number().int().min(0).optional(),
  /** Final event only (`succeeded`, `cancelled`): tokens the job trained on (every epoch's). */
  trained_tokens: z.number().int().min(0).optional(),
});
export type JobEvent = z.infer<typeof JobEvent>;

/**
 * The edge's answer to a JobEvent: `job_status` is the job's status at the edge after the event
 * (OpenAI's names: `validating_files`, `queued`, `running`, `paused`, `succeeded`, `failed`,
 * `cancelled`). A worker still training a job the edge calls cancelled, failed or succeeded
 * stops it: that is how a cancel that never reached the worker still stops it.
 */
export const JobEventAck = z.object({
  ok: z.boolean(),
  duplicate: z.boolean(),
  job_status: z.string(),
});
export type JobEventAck = z.infer<typeof JobEventAck>;

/** Worker -> edge, POST /internal/v1/workers/heartbeat. */
export const Heartbeat = z.strictObject({
  worker_id: SafeId,
  url: z.url(),
  backbone: z.strictObject({ name: z.string(), fingerprint: Sha256Hex }),
  capacity: z.strictObject({
    queue_depth: z.number().int().min(0),
    max_queue: z.number().int().min(1),
    running_jobs: z.number().int().min(0),
  }),
  loaded_adapters: z.array(z.string()).max(10_000),
});
export type Heartbeat = z.infer<typeof Heartbeat>;

/** The side-net config a job trains, as stored in the manifest. */
export { SideNetConfig };
