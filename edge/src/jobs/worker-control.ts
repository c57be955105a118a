import { registry } from '../durable-objects/worker-registry.ts';
import { signedFetch } from '../lib/worker-client.ts';
import type { JobRow } from '../store/jobs.ts';

/**
 * Tells the worker that holds a job to cancel it, or to pause it (checkpoint and stop), by its
 * signed `POST /internal/v1/jobs/{id}/cancel | pause`. Best effort: the job's status is already
 * changed at the edge, and a worker that misses this learns it from the answer to its next
 * progress callback. True when the worker acknowledged.
 */
export async function tellWorker(env: Env, job: JobRow, action: 'cancel' | 'pause'): Promise<boolean> {
  if (!job.worker_id) return false;
  const worker = await registry(env).worker(job.worker_id);
  if (!worker) return false;
  const url = `${worker.url}/internal/v1/jobs/${encodeURIComponent(job.id)}/${action}`;
  try {
    const res = await signedFetch(env, worker.worker_id, url, {});
    if (res.ok) return true;
    console.warn(`edge: worker ${worker.worker_id} answered ${res.status} to ${action} ${job.id}`);
  } catch (err) {
    console.warn(`edge: could not ${action} ${job.id} on ${worker.worker_id}: ${(err as Error).message}`);
  }
  return false;
}
