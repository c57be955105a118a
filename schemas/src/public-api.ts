import { z } from 'zod';
import { FineTuningMethod, JobHyperparameters } from './fine-tuning.ts';
import { ChatMessage } from './internal.ts';

/**
 * The public API's request bodies and the objects it answers with (DESIGN.md section 6),
 * OpenAI-shaped where OpenAI has one. The edge validates requests with these; clients may parse
 * responses with them.
 */

// ---------------------------------------------------------------------------------------------
// Tenants and keys (admin API)

export const TenantLimits = z.strictObject({
  requests_per_min: z.number().int().min(1).max(1_000_000),
  tokens_per_min: z.number().int().min(1).max(1_000_000_000),
  concurrent_jobs: z.number().int().min(0).max(1000),
  max_adapters: z.number().int().min(0).max(1_000_000),
});
export type TenantLimits = z.infer<typeof TenantLimits>;

export const CreateTenantRequest = z.strictObject({
  name: z.string().min(1).max(256),
  limits: TenantLimits.partial().default({}),
});
export type CreateTenantRequest = z.infer<typeof CreateTenantRequest>;

export const Tenant = z.object({
  id: z.string(),
  object: z.literal('tenant'),
  name: z.string(),
  limits: TenantLimits,
  created_at: z.number().int(),
});
export type Tenant = z.infer<typeof Tenant>;

export const CreateApiKeyRequest = z.strictObject({ name: z.string().max(256).default('') });

export const ApiKey = z.object({
  id: z.string(),
  object: z.literal('api_key'),
  tenant: z.string(),
  name: z.string(),
  /** The first characters, for recognising a key in a list. */
  prefix: z.string(),
  created_at: z.number().int(),
  revoked_at: z.number().int().nullable(),
  /** The secret itself: only in the answer to its creation. */
  key: z.string().optional(),
});
export type ApiKey = z.infer<typeof ApiKey>;

// ---------------------------------------------------------------------------------------------
// Files

/** What a tenant may upload. */
export const FilePurpose = z.literal('fine-tune', { error: 'purpose must be "fine-tune"' });

export const FileObject = z.object({
  id: z.string(),
  object: z.literal('file'),
  bytes: z.number().int(),
  created_at: z.number().int(),
  filename: z.string(),
  /** `fine-tune-results`: a job's step-metrics CSV, written by the platform. */
  purpose: z.enum(['fine-tune', 'fine-tune-results']),
  /** Ladder extensions: what validation found (no format for a results file; its lines are CSV rows). */
  format: z.enum(['chat', 'completion', 'classification']).nullable(),
  line_count: z.number().int(),
  sha256: z.string(),
});
export type FileObject = z.infer<typeof FileObject>;

// ---------------------------------------------------------------------------------------------
// Fine-tuning jobs (the request shapes: fine-tuning.ts)

export const JobError = z.object({ code: z.string(), message: z.string(), param: z.string().nullable() });

export const FineTuningJobStatus = z.enum([
  'validating_files',
  'queued',
  'running',
  'paused',
  'succeeded',
  'failed',
  'cancelled',
]);
export type FineTuningJobStatus = z.infer<typeof FineTuningJobStatus>;

export const FineTuningJob = z.object({
  id: z.string(),
  object: z.literal('fine_tuning.job'),
  model: z.string(),
  /** The tenant (OpenAI's organization). */
  organization_id: z.string(),
  created_at: z.number().int(),
  finished_at: z.number().int().nullable(),
  /** Unix seconds; while running, from the worker's last estimate. */
  estimated_finish: z.number().int().nullable(),
  fine_tuned_model: z.string().nullable(),
  status: FineTuningJobStatus,
  training_file: z.string(),
  validation_file: z.string().nullable(),
  hyperparameters: JobHyperparameters,
  method: FineTuningMethod,
  /** The step-metrics CSV (purpose `fine-tune-results`), once the job has succeeded. */
  result_files: z.array(z.string()),
  suffix: z.string().nullable(),
  seed: z.number().int(),
  metadata: z.record(z.string(), z.string()).nullable(),
  trained_tokens: z.number().int().nullable(),
  error: JobError.nullable(),
  /** Ladder extension: dispatch attempts so far (a lease that expires, or a resume, re-dispatches). */
  attempt: z.number().int(),
});
export type FineTuningJob = z.infer<typeof FineTuningJob>;

/** A checkpoint's metrics, OpenAI-named: the figures measured at its step, the others absent. */
export const CheckpointMetrics = z.object({
  step: z.number().int(),
  train_loss: z.number().optional(),
  train_mean_token_accuracy: z.number().optional(),
  valid_loss: z.number().optional(),
  valid_mean_token_accuracy: z.number().optional(),
  full_valid_loss: z.number().optional(),
  full_valid_mean_token_accuracy: z.number().optional(),
});
export type CheckpointMetrics = z.infer<typeof CheckpointMetrics>;

export const FineTuningJobEvent = z.object({
  id: z.string(),
  object: z.literal('fine_tuning.job.event'),
  created_at: z.number().int(),
  level: z.enum(['info', 'warn', 'error']),
  message: z.string(),
  /** `metrics` events carry a step's figures in `data` (StepMetrics and `total_steps`). */
  type: z.enum(['message', 'metrics']),
  data: z.record(z.string(), z.unknown()),
});
export type FineTuningJobEvent = z.infer<typeof FineTuningJobEvent>;

export const FineTuningCheckpoint = z.object({
  id: z.string(),
  object: z.literal('fine_tuning.job.checkpoint'),
  created_at: z.number().int(),
  /** `<fine-tuned model>:ckpt-step-<n>`: names the checkpoint; only the final adapter is served. */
  fine_tuned_model_checkpoint: z.string(),
  fine_tuning_job_id: z.string(),
  step_number: z.number().int(),
  metrics: CheckpointMetrics,
});

export const ListQuery = z.object({
  after: z.string().max(128).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
});

export function listOf<T extends z.ZodType>(item: T) {
  return z.object({ object: z.literal('list'), data: z.array(item), has_more: z.boolean() });
}

// ---------------------------------------------------------------------------------------------
// Models

export const ModelObject = z.object({
  id: z.string(),
  object: z.literal('model'),
  created: z.number().int(),
  owned_by: z.string(),
  /** Ladder extensions: the backbone an adapter runs on (itself for a backbone). */
  backbone: z.string(),
  kind: z.enum(['backbone', 'adapter']),
});
export type ModelObject = z.infer<typeof ModelObject>;

// ---------------------------------------------------------------------------------------------
// Completions

const Stop = z.union([z.string().min(1).max(256), z.array(z.string().min(1).max(256)).max(8)]);

const SamplingFields = {
  model: z.string().min(1).max(256),
  max_tokens: z.number().int().min(1).max(32_768).optional(),
  max_completion_tokens: z.number().int().min(1).max(32_768).optional(),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .optional(),
  stop: Stop.nullable().optional(),
  n: z.literal(1, { error: 'only n = 1 is supported' }).optional(),
  stream: z.boolean().default(false),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullable().optional(),
  user: z.string().max(256).optional(),
};

export const ChatCompletionRequest = z.object({
  ...SamplingFields,
  messages: z.array(ChatMessage).min(1).max(1000),
});
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequest>;

export const CompletionRequest = z.object({
  ...SamplingFields,
  prompt: z.string().max(1_000_000),
});
export type CompletionRequest = z.infer<typeof CompletionRequest>;

export const CompletionUsage = z.object({
  prompt_tokens: z.number().int(),
  completion_tokens: z.number().int(),
  total_tokens: z.number().int(),
});

export const ChatCompletion = z.object({
  id: z.string(),
  object: z.literal('chat.completion'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      message: z.object({ role: z.literal('assistant'), content: z.string() }),
      finish_reason: z.enum(['stop', 'length']),
    }),
  ),
  usage: CompletionUsage,
});

export const TextCompletion = z.object({
  id: z.string(),
  object: z.literal('text_completion'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({ index: z.number().int(), text: z.string(), finish_reason: z.enum(['stop', 'length']) }),
  ),
  usage: CompletionUsage,
});

// ---------------------------------------------------------------------------------------------
// Usage and billing

export const UsageQuery = z.object({
  /** Inclusive days, YYYY-MM-DD (UTC). */
  start_date: z.iso.date().optional(),
  end_date: z.iso.date().optional(),
});

export const UsageBucket = z.object({
  day: z.string(),
  model: z.string(),
  prompt_tokens: z.number().int(),
  completion_tokens: z.number().int(),
  training_tokens: z.number().int(),
  requests: z.number().int(),
  cost_usd: z.number(),
});

export const UsageReport = z.object({
  object: z.literal('usage'),
  tenant: z.string(),
  data: z.array(UsageBucket),
  total_cost_usd: z.number(),
});
export type UsageReport = z.infer<typeof UsageReport>;

/** What a billing system ingests (Stripe-style meter events): one quantity per event name. */
export const MeterEvent = z.object({
  identifier: z.string(),
  event_name: z.enum(['ladder.prompt_tokens', 'ladder.completion_tokens', 'ladder.training_tokens']),
  timestamp: z.number().int(),
  payload: z.object({ tenant: z.string(), model: z.string(), value: z.number().int() }),
});
export type MeterEvent = z.infer<typeof MeterEvent>;
