import type { FineTuningJobSpec } from '@ladder/schemas';
import { config } from '../lib/config.ts';
import { ApiException, invalidRequest, notFound } from '../lib/errors.ts';
import { newId, unixSeconds } from '../lib/ids.ts';
import type { TenantContext } from '../lib/types.ts';
import { getFile } from '../store/files.ts';
import { addJobEvent, type JobRow, UNFINISHED_SQL } from '../store/jobs.ts';
import { enqueueJob } from './queue-message.ts';

export function findByKey(env: Env, tenant: string, key: string): Promise<JobRow | null> {
  return env.DB.prepare('SELECT * FROM jobs WHERE tenant_id = ? AND idempotency_key = ?')
    .bind(tenant, key)
    .first<JobRow>();
}

/** The training and validation files a job names, checked as OpenAI does: present, and for fine-tuning. */
export async function checkJobFiles(
  env: Env,
  tenant: string,
  files: { training_file: string; validation_file: string | null },
): Promise<void> {
  for (const [param, id] of [
    ['training_file', files.training_file],
    ['validation_file', files.validation_file],
  ] as const) {
    if (!id) continue;
    const file = await getFile(env, tenant, id);
    if (!file) throw notFound('file', id, param);
    if (file.purpose !== 'fine-tune') {
      throw invalidRequest(
        `File ${id} has purpose '${file.purpose}'; ${param} must be a file uploaded with purpose 'fine-tune'.`,
        param,
        'invalid_file_purpose',
      );
    }
  }
}

/**
 * A new job row in `validating_files`, its first events, and its message on the training queue
 * (the consumer checks the files again and queues it). A concurrent request with the same
 * Idempotency-Key that won the insert is answered as a replay of that one.
 */
export async function createJob(
  env: Env,
  tenant: TenantContext,
  spec: FineTuningJobSpec,
  idem: { key: string | null; requestHash: string },
): Promise<{ row: JobRow; replayOf?: undefined } | { replayOf: JobRow }> {
  const backbones = config(env).backbones;
  if (!backbones.includes(spec.model)) {
    throw invalidRequest(
      `Model '${spec.model}' is not a backbone this platform trains on (${backbones.join(', ')}).`,
      'model',
      'model_not_found',
    );
  }
  await checkJobFiles(env, tenant.id, spec);
  await checkQuotas(env, tenant);

  const row: JobRow = {
    id: newId('ftjob'),
    tenant_id: tenant.id,
    model: spec.model,
    training_file: spec.training_file,
    validation_file: spec.validation_file,
    method: JSON.stringify(spec.method),
    method_type: spec.method_type,
    suffix: spec.suffix,
    seed: spec.seed ?? Math.floor(Math.random() * 2 ** 31),
    metadata: spec.metadata ? JSON.stringify(spec.metadata) : null,
    status: 'validating_files',
    attempt: 1,
    resumes: 0,
    worker_id: null,
    error: null,
    fine_tuned_model: null,
    trained_tokens: null,
    hyperparameters: null,
    result_files: null,
    estimated_finish: null,
    idempotency_key: idem.key,
    request_hash: idem.requestHash,
    created_at: unixSeconds(),
    started_at: null,
    finished_at: null,
  };
  let inserted: D1Result;
  try {
    // The quotas are checked again in the insert itself: D1 runs one statement at a time, so
    // parallel creates cannot all pass a count read before any of them inserted.
    inserted = await env.DB.prepare(
      `INSERT INTO jobs (id, tenant_id, model, training_file, validation_file, method, method_type, suffix, seed,
         metadata, status, attempt, idempotency_key, request_hash, created_at)
       SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?
       WHERE (SELECT COUNT(*) FROM jobs WHERE tenant_id = ?2 AND status IN (${ACTIVE_SQL})) < ?15
         AND (SELECT COUNT(*) FROM jobs WHERE tenant_id = ?2 AND status IN (${UNFINISHED_SQL}))
           + (SELECT COUNT(*) FROM adapters WHERE tenant_id = ?2 AND deleted_at IS NULL) < ?16`,
    )
      .bind(
        row.id,
        row.tenant_id,
        row.model,
        row.training_file,
        row.validation_file,
        row.method,
        row.method_type,
        row.suffix,
        row.seed,
        row.metadata,
        row.status,
        row.idempotency_key,
        row.request_hash,
        row.created_at,
        tenant.limits.concurrent_jobs,
        tenant.limits.max_adapters,
      )
      .run();
  } catch (err) {
    const prior = idem.key ? await findByKey(env, tenant.id, idem.key) : null;
    if (prior) return { replayOf: prior };
    throw err;
  }
  if (inserted.meta.changes === 0) {
    const prior = idem.key ? await findByKey(env, tenant.id, idem.key) : null;
    if (prior) return { replayOf: prior };
    await checkQuotas(env, tenant);
    throw quotaError('concurrent_jobs_quota', tenant);
  }
  await addJobEvent(env, row, 'created', { type: 'created', message: `Created fine-tuning job: ${row.id}` });
  const validation = row.validation_file ? ` and validation file: ${row.validation_file}` : '';
  await addJobEvent(env, row, 'validating_files', {
    type: 'validating_files',
    message: `Validating training file: ${row.training_file}${validation}`,
  });
  await enqueueJob(env, { job_id: row.id, tenant: tenant.id, attempt: 1 });
  return { row };
}

/** Statuses that hold (or wait for) a worker: what `concurrent_jobs` counts. */
const ACTIVE_SQL = "'validating_files', 'queued', 'running'";

/** Concurrent jobs (a paused one holds no worker) and adapters, the unfinished jobs counted as theirs. */
async function checkQuotas(env: Env, tenant: TenantContext): Promise<void> {
  const counts = await env.DB.prepare(
    `SELECT (SELECT COUNT(*) FROM jobs WHERE tenant_id = ?1 AND status IN (${ACTIVE_SQL})) AS active,
            (SELECT COUNT(*) FROM jobs WHERE tenant_id = ?1 AND status IN (${UNFINISHED_SQL})) AS unfinished,
            (SELECT COUNT(*) FROM adapters WHERE tenant_id = ?1 AND deleted_at IS NULL) AS adapters`,
  )
    .bind(tenant.id)
    .first<{ active: number; unfinished: number; adapters: number }>();
  const { active = 0, unfinished = 0, adapters = 0 } = counts ?? {};
  if (active >= tenant.limits.concurrent_jobs) throw quotaError('concurrent_jobs_quota', tenant);
  if (adapters + unfinished >= tenant.limits.max_adapters) throw quotaError('adapter_quota', tenant);
}

function quotaError(code: 'concurrent_jobs_quota' | 'adapter_quota', tenant: TenantContext): ApiException {
  const message =
    code === 'concurrent_jobs_quota'
      ? `Quota: at most ${tenant.limits.concurrent_jobs} concurrent fine-tuning jobs.`
      : `Quota: at most ${tenant.limits.max_adapters} adapters (delete one first).`;
  return new ApiException(429, message, 'quota_exceeded', code);
}
