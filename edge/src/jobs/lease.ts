import { config } from '../lib/config.ts';
import { unixSeconds } from '../lib/ids.ts';
import { addEvent, type JobRow } from '../store/jobs.ts';
import { enqueueJob } from './queue-message.ts';

/** A training job held by a worker until `expires_at` (unix ms); progress events renew it. */
export interface Lease {
  job_id: string;
  tenant: string;
  attempt: number;
  worker_id: string;
  expires_at: number;
}

/**
 * A lease ran out with no progress: the worker is presumed gone. Re-dispatch with the next
 * attempt number (the next worker resumes from the last checkpoint), or, past the retry limit,
 * fail the job with the reason. A lease of an older attempt, or of a finished job, is ignored.
 */
export async function expireLease(
  env: Env,
  lease: Lease,
  now: number,
): Promise<'redispatched' | 'failed' | 'stale'> {
  const job = await env.DB.prepare('SELECT * FROM jobs WHERE id = ? AND tenant_id = ?')
    .bind(lease.job_id, lease.tenant)
    .first<JobRow>();
  if (job?.status !== 'running' || job.attempt !== lease.attempt) return 'stale';
  const maxAttempts = config(env).jobMaxAttempts;
  const leaseS = config(env).jobLeaseS;
  // A resume is an attempt too, but not one that failed: only lease expiries count to the limit.
  const tries = job.attempt - job.resumes;
  if (tries >= maxAttempts) {
    const message = `worker ${lease.worker_id} made no progress for ${leaseS}s; gave up after ${tries} attempts`;
    await env.DB.prepare(
      `UPDATE jobs SET status = 'failed', error = ?, finished_at = ? WHERE id = ? AND attempt = ? AND status = 'running'`,
    )
      .bind(
        JSON.stringify({ code: 'lease_expired', message, param: null }),
        unixSeconds(now),
        job.id,
        job.attempt,
      )
      .run();
    await addEvent(env, {
      id: `${job.id}-lease-${job.attempt}-failed`,
      job_id: job.id,
      tenant_id: job.tenant_id,
      type: 'failed',
      level: 'error',
      message,
    });
    return 'failed';
  }
  const attempt = job.attempt + 1;
  const res = await env.DB.prepare(
    `UPDATE jobs SET status = 'queued', attempt = ?, worker_id = NULL WHERE id = ? AND attempt = ? AND status = 'running'`,
  )
    .bind(attempt, job.id, job.attempt)
    .run();
  if (res.meta.changes === 0) return 'stale';
  await addEvent(env, {
    id: `${job.id}-lease-${job.attempt}-expired`,
    job_id: job.id,
    tenant_id: job.tenant_id,
    type: 'lease_expired',
    level: 'warn',
    message: `worker ${lease.worker_id} made no progress for ${leaseS}s; re-dispatching (attempt ${tries + 1} of ${maxAttempts})`,
  });
  await enqueueJob(env, { job_id: job.id, tenant: job.tenant_id, attempt });
  return 'redispatched';
}
