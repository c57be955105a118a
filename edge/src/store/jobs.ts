import { type FineTuningJob, type FineTuningJobEvent, TrainingMethod } from '@ladder/schemas';
import { unixSeconds } from '../lib/ids.ts';

export interface JobRow {
  id: string;
  tenant_id: string;
  model: string;
  training_file: string;
  validation_file: string | null;
  method: string;
  suffix: string | null;
  seed: number;
  metadata: string | null;
  status: FineTuningJob['status'];
  attempt: number;
  worker_id: string | null;
  error: string | null;
  fine_tuned_model: string | null;
  trained_tokens: number | null;
  idempotency_key: string | null;
  request_hash: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
}

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

export function jobObject(r: JobRow): FineTuningJob {
  return {
    id: r.id,
    object: 'fine_tuning.job',
    model: r.model,
    created_at: r.created_at,
    finished_at: r.finished_at,
    fine_tuned_model: r.fine_tuned_model,
    status: r.status,
    training_file: r.training_file,
    validation_file: r.validation_file,
    method: TrainingMethod.parse(JSON.parse(r.method)),
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

interface EventRow {
  seq: number;
  id: string;
  type: string;
  level: FineTuningJobEvent['level'];
  message: string;
  data: string | null;
  created_at: number;
}

export async function listEvents(
  env: Env,
  tenant: string,
  jobId: string,
  afterSeq: number,
  limit: number,
): Promise<{ seq: number; event: FineTuningJobEvent }[]> {
  const { results } = await env.DB.prepare(
    'SELECT * FROM job_events WHERE job_id = ? AND tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?',
  )
    .bind(jobId, tenant, afterSeq, limit)
    .all<EventRow>();
  return results.map((r) => ({
    seq: r.seq,
    event: {
      id: r.id,
      object: 'fine_tuning.job.event',
      created_at: r.created_at,
      level: r.level,
      message: r.message,
      type: r.type,
      data: r.data ? JSON.parse(r.data) : null,
    },
  }));
}
