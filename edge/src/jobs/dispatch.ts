import { StartJobRequest, StartJobResponse } from '@ladder/schemas';
import { registry } from '../durable-objects/worker-registry.ts';
import { config } from '../lib/config.ts';
import { ApiException } from '../lib/errors.ts';
import { signedFileUrl } from '../lib/file-urls.ts';
import { unixSeconds } from '../lib/ids.ts';
import { rendezvousOrder, withFailover } from '../lib/routing.ts';
import { signedFetch } from '../lib/worker-client.ts';
import { getFile } from '../store/files.ts';
import { addEvent, type JobRow, rowMethod } from '../store/jobs.ts';
import { checkJobFiles } from './create.ts';
import type { TrainingJobMessage } from './queue-message.ts';

export type DispatchOutcome = 'leased' | 'stale' | 'no_worker';

/**
 * Leases a queued job to a worker: signed `POST /internal/v1/jobs` (StartJobRequest) to workers
 * of the job's backbone in rendezvous order on the job id, the first that acknowledges gets it.
 * The worker answers the same job id idempotently, so a redelivered message is harmless; a
 * message for an older attempt, or a job no longer queued, is stale.
 */
export async function dispatchJob(
  env: Env,
  msg: TrainingJobMessage,
  now = Date.now(),
): Promise<DispatchOutcome> {
  const job = await env.DB.prepare('SELECT * FROM jobs WHERE id = ? AND tenant_id = ?')
    .bind(msg.job_id, msg.tenant)
    .first<JobRow>();
  if (!job || job.attempt !== msg.attempt) return 'stale';
  if (job.status === 'validating_files') {
    if (!(await validateFiles(env, job))) return 'stale';
  } else if (job.status !== 'queued') return 'stale';

  const workers = (await registry(env).healthy(now)).filter((w) => w.backbone === job.model);
  if (workers.length === 0) return 'no_worker';
  const base = config(env).publicBaseUrl;
  const start = StartJobRequest.parse({
    job_id: job.id,
    tenant: job.tenant_id,
    training_file_url: await signedFileUrl(env, job.tenant_id, job.training_file, now),
    validation_file_url: job.validation_file
      ? await signedFileUrl(env, job.tenant_id, job.validation_file, now)
      : undefined,
    method: rowMethod(job),
    suffix: job.suffix ?? undefined,
    seed: job.seed,
    callback_url: new URL(`/internal/v1/jobs/${job.id}/events`, base).toString(),
    attempt: job.attempt,
  });

  let accepted: { worker_id: string; ack: StartJobResponse };
  try {
    const { res, worker } = await withFailover(rendezvousOrder(job.id, workers), (w) =>
      signedFetch(env, w.worker_id, `${w.url}/internal/v1/jobs`, start),
    );
    if (!res.ok)
      throw new Error(`worker ${worker.worker_id} refused the job: ${res.status} ${await res.text()}`);
    accepted = { worker_id: worker.worker_id, ack: StartJobResponse.parse(await res.json()) };
  } catch (err) {
    console.warn(`edge: dispatch of ${job.id} failed: ${(err as Error).message}`);
    return 'no_worker';
  }

  const res = await env.DB.prepare(
    `UPDATE jobs SET status = 'running', worker_id = ?, started_at = COALESCE(started_at, ?)
     WHERE id = ? AND attempt = ? AND status = 'queued'`,
  )
    .bind(accepted.worker_id, unixSeconds(now), job.id, job.attempt)
    .run();
  if (res.meta.changes === 0) return 'stale'; // cancelled (or re-dispatched) meanwhile
  await registry(env).lease(
    { job_id: job.id, tenant: job.tenant_id, attempt: job.attempt, worker_id: accepted.worker_id },
    now,
  );
  const resumed = accepted.ack.resumed_from_step;
  await addEvent(env, {
    id: `${job.id}-dispatch-${job.attempt}`,
    job_id: job.id,
    tenant_id: job.tenant_id,
    type: 'dispatched',
    message: `Leased to worker ${accepted.worker_id} (attempt ${job.attempt})${resumed ? `, resuming from step ${resumed}` : ''}`,
    data: { worker_id: accepted.worker_id, attempt: job.attempt, resumed_from_step: resumed },
  });
  return 'leased';
}

/**
 * A job's first step (OpenAI's `validating_files`): its files must still be there, in R2 too, as
 * fine-tuning files. Moves it to `queued`, or fails it naming the file. True when it may go on.
 */
async function validateFiles(env: Env, job: JobRow): Promise<boolean> {
  let problem: { message: string; param: string | null } | null = null;
  try {
    await checkJobFiles(env, job.tenant_id, job);
    for (const [param, id] of [
      ['training_file', job.training_file],
      ['validation_file', job.validation_file],
    ] as const) {
      const row = id ? await getFile(env, job.tenant_id, id) : null;
      if (row && !(await env.FILES.head(row.r2_key)))
        problem ??= { message: `The bytes of file ${id} are missing.`, param };
    }
  } catch (err) {
    if (!(err instanceof ApiException)) throw err;
    problem = { message: err.message, param: err.param };
  }
  if (problem) {
    const error = { code: 'invalid_file', ...problem };
    const res = await env.DB.prepare(
      `UPDATE jobs SET status = 'failed', error = ?, finished_at = ? WHERE id = ? AND status = 'validating_files'`,
    )
      .bind(JSON.stringify(error), unixSeconds(), job.id)
      .run();
    if (res.meta.changes > 0)
      await addEvent(env, {
        id: `${job.id}-files-invalid`,
        job_id: job.id,
        tenant_id: job.tenant_id,
        type: 'failed',
        level: 'error',
        message: `File validation failed: ${problem.message}`,
      });
    return false;
  }
  const res = await env.DB.prepare(
    `UPDATE jobs SET status = 'queued' WHERE id = ? AND status = 'validating_files'`,
  )
    .bind(job.id)
    .run();
  if (res.meta.changes === 0) return false; // cancelled meanwhile
  job.status = 'queued';
  await addEvent(env, {
    id: `${job.id}-files-validated`,
    job_id: job.id,
    tenant_id: job.tenant_id,
    type: 'files_validated',
    message: 'Files validated, moving job to queued state',
  });
  return true;
}

/** The queue gave up on placing the job: fail it with the reason rather than leave it queued forever. */
export async function failUndispatchable(
  env: Env,
  msg: TrainingJobMessage,
  deliveries: number,
): Promise<void> {
  const message = `no worker for this job's backbone accepted it after ${deliveries} tries`;
  const res = await env.DB.prepare(
    `UPDATE jobs SET status = 'failed', error = ?, finished_at = ? WHERE id = ? AND tenant_id = ? AND attempt = ? AND status = 'queued'`,
  )
    .bind(
      JSON.stringify({ code: 'no_worker_available', message, param: null }),
      unixSeconds(),
      msg.job_id,
      msg.tenant,
      msg.attempt,
    )
    .run();
  if (res.meta.changes > 0) {
    await addEvent(env, {
      id: `${msg.job_id}-undispatchable-${msg.attempt}`,
      job_id: msg.job_id,
      tenant_id: msg.tenant,
      type: 'failed',
      level: 'error',
      message,
    });
  }
}
