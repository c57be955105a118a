import {
  echoMethod,
  type FineTuningJob,
  type FineTuningJobEvent,
  jobHyperparameters,
  type MethodType,
  type ResolvedTraining,
  StepMetrics,
  TrainingMethod,
} from '@ladder/schemas';
import { z } from 'zod';
import { unixSeconds } from '../lib/ids.ts';

export interface JobRow {
  id: string;
  tenant_id: string;
  model: string;
  training_file: string;
  validation_file: string | null;
  /** JSON TrainingMethod: what the worker is sent. */
  method: string;
  /** The request's `method.type` (null on rows older than it: the method's own type). */
  method_type: MethodType | null;
  suffix: string | null;
  seed: number;
  metadata: string | null;
  status: FineTuningJob['status'];
  attempt: number;
  resumes: number;
  worker_id: string | null;
  error: string | null;
  fine_tuned_model: string | null;
  trained_tokens: number | null;
  /** JSON ResolvedHyperparameters, once the worker has started the job. */
  hyperparameters: string | null;
  /** JSON array of file ids. */
  result_files: string | null;
  estimated_finish: number | null;
  idempotency_key: string | null;
  request_hash: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
}

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
/** Statuses a job can be cancelled from (and that hold a place in the tenant's quotas). */
export const UNFINISHED = ['validating_files', 'queued', 'running', 'paused'] as const;
export const UNFINISHED_SQL = UNFINISHED.map((s) => `'${s}'`).join(', ');

/** The method a row was created with; a row the schema no longer reads still shows its type. */
export function rowMethod(r: JobRow): TrainingMethod {
  const stored = JSON.parse(r.method) as { type: TrainingMethod['type'] };
  const parsed = TrainingMethod.safeParse(stored);
  return parsed.success ? parsed.data : TrainingMethod.parse({ type: stored.type });
}

export function jobObject(r: JobRow): FineTuningJob {
  const method = rowMethod(r);
  const resolved = r.hyperparameters ? (JSON.parse(r.hyperparameters) as ResolvedTraining) : null;
  return {
    id: r.id,
    object: 'fine_tuning.job',
    model: r.model,
    organization_id: r.tenant_id,
    created_at: r.created_at,
    finished_at: r.finished_at,
    estimated_finish: r.status === 'running' ? r.estimated_finish : null,
    fine_tuned_model: r.fine_tuned_model,
    status: r.status,
    training_file: r.training_file,
    validation_file: r.validation_file,
    hyperparameters: jobHyperparameters(method, resolved),
    method: echoMethod(r.method_type ?? method.type, method, resolved),
    result_files: r.result_files ? (JSON.parse(r.result_files) as string[]) : [],
    suffix: r.suffix,
    seed: r.seed,
    metadata: r.metadata ? JSON.parse(r.metadata) : null,
    trained_tokens: r.trained_tokens,
    error: r.error ? JSON.parse(r.error) : null,
    attempt: r.attempt,
  };
}

/** Every read names the tenant: another tenant's job is simply not found. */
export function getJob(env: Env, tenant: string, id: string): Promise<JobRow | null> {
  return env.DB.prepare('SELECT * FROM jobs WHERE id = ? AND tenant_id = ?').bind(id, tenant).first<JobRow>();
}

export interface NewEvent {
  id: string;
  job_id: string;
  tenant_id: string;
  type: string;
  level?: 'info' | 'warn' | 'error';
  message: string;
  data?: Record<string, unknown> | null;
  created_at?: number;
}

/** Inserts unless the id was seen; true when it was new. */
export async function addEvent(env: Env, e: NewEvent): Promise<boolean> {
  const res = await env.DB.prepare(
    `INSERT OR IGNORE INTO job_events (id, job_id, tenant_id, type, level, message, data, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  )
    .bind(
      e.id,
      e.job_id,
      e.tenant_id,
      e.type,
      e.level ?? 'info',
      e.message,
      e.data ? JSON.stringify(e.data) : null,
      e.created_at ?? unixSeconds(),
    )
    .run();
  return res.meta.changes > 0;
}

/** An event the edge itself writes about a job; its id is the job's id and `suffix`. */
export function addJobEvent(
  env: Env,
  job: Pick<JobRow, 'id' | 'tenant_id'>,
  suffix: string,
  e: Pick<NewEvent, 'type' | 'message' | 'level' | 'data'>,
): Promise<boolean> {
  return addEvent(env, { ...e, id: `${job.id}-${suffix}`, job_id: job.id, tenant_id: job.tenant_id });
}

interface EventRow {
  seq: number;
  id: string;
  type: string;
  level: FineTuningJobEvent['level'];
  message: string;
  data: string | null;
  created_at: number;
}

/** Kinds of stored event that carry a step's figures: OpenAI's `type: 'metrics'`. */
const METRICS_KINDS = new Set(['metrics']);

/**
 * A page of a job's events: `newest` first below the cursor (the list, as OpenAI pages it), or
 * `oldest` first above it (a stream that picks up where it left off).
 */
export async function listEvents(
  env: Env,
  tenant: string,
  jobId: string,
  page: { order: 'newest' | 'oldest'; cursorSeq: number | null; limit: number },
): Promise<{ seq: number; event: FineTuningJobEvent }[]> {
  const newest = page.order === 'newest';
  const { results } = await env.DB.prepare(
    `SELECT * FROM job_events WHERE job_id = ? AND tenant_id = ? AND seq ${newest ? '<' : '>'} ?
     ORDER BY seq ${newest ? 'DESC' : 'ASC'} LIMIT ?`,
  )
    .bind(jobId, tenant, page.cursorSeq ?? (newest ? Number.MAX_SAFE_INTEGER : 0), page.limit)
    .all<EventRow>();
  return results.map((r) => ({
    seq: r.seq,
    event: {
      id: r.id,
      object: 'fine_tuning.job.event',
      created_at: r.created_at,
      level: r.level,
      message: r.message,
      type: METRICS_KINDS.has(r.type) ? 'metrics' : 'message',
      data: r.data ? JSON.parse(r.data) : {},
    },
  }));
}

/** The step figures of a job's metrics events, one row a step (a repeated step keeps its latest). */
export async function stepMetrics(env: Env, tenant: string, jobId: string): Promise<StepMetrics[]> {
  const { results } = await env.DB.prepare(
    `SELECT data FROM job_events WHERE job_id = ? AND tenant_id = ? AND type IN (${[...METRICS_KINDS].map(() => '?').join(', ')})
     AND data IS NOT NULL ORDER BY seq`,
  )
    .bind(jobId, tenant, ...METRICS_KINDS)
    .all<{ data: string }>();
  // The stored data also holds total_steps, tokens/s and such: read the metrics, drop the rest.
  const Figures = z.object(StepMetrics.shape);
  const byStep = new Map<number, StepMetrics>();
  for (const r of results) {
    const m = Figures.safeParse(JSON.parse(r.data));
    if (m.success) byStep.set(m.data.step, m.data);
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}
