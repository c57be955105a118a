import { PurgeRequest, SafeId } from '@ladder/schemas';
import { z } from 'zod';
import { registry } from '../durable-objects/worker-registry.ts';
import { signedFetch } from '../lib/worker-client.ts';

/**
 * Deleting a model or a file deletes what the GPU workers keep of it: every live worker (and the
 * worker that trained the job) gets a signed `POST /internal/v1/purge` per job, and a worker that
 * does not acknowledge gets it again from the training queue with growing delays, about 20 minutes
 * in all (PURGE_DELIVERIES). Every purge is idempotent.
 */
export const PurgeMessage = z.strictObject({ purge: PurgeRequest, worker_id: SafeId });
export type PurgeMessage = z.infer<typeof PurgeMessage>;

/** Deliveries of one purge before it is given up (logged): 10 s, 20 s, ... capped at 5 min. */
export const PURGE_DELIVERIES = 8;
/** Purges sent inline by the DELETE; more (a file many jobs used) go through the queue. */
const INLINE = 16;
const PURGE_TIMEOUT_MS = 10_000;

export const purgeRetryDelayS = (attempts: number) => Math.min(300, 10 * 2 ** Math.max(0, attempts - 1));

/** One purge on one worker; true when it acknowledged (or has gone for good from the registry). */
export async function purgeOn(env: Env, workerId: string, req: PurgeRequest): Promise<boolean> {
  const worker = await registry(env).worker(workerId);
  if (!worker) return false;
  try {
    const res = await signedFetch(env, workerId, `${worker.url}/internal/v1/purge`, req, {
      timeoutMs: PURGE_TIMEOUT_MS,
    });
    await res.body?.cancel();
    if (res.ok) return true;
    console.warn(`edge: worker ${workerId} answered ${res.status} to the purge of job ${req.job_id}`);
  } catch (err) {
    console.warn(`edge: could not purge job ${req.job_id} on ${workerId}: ${(err as Error).message}`);
  }
  return false;
}

/** Sends each purge to every live worker and to `alsoWorkers` (a job's own); what fails is queued. */
export async function purgeOnWorkers(
  env: Env,
  requests: PurgeRequest[],
  alsoWorkers: (string | null)[] = [],
): Promise<void> {
  if (requests.length === 0) return;
  const live = (await registry(env).healthy(Date.now())).map((w) => w.worker_id);
  const workers = [...new Set([...live, ...alsoWorkers.filter((w): w is string => w !== null)])];
  const pairs = workers.flatMap((worker_id) => requests.map((purge) => ({ purge, worker_id })));
  const later: PurgeMessage[] = pairs.slice(INLINE);
  const results = await Promise.all(
    pairs.slice(0, INLINE).map(async (p) => ((await purgeOn(env, p.worker_id, p.purge)) ? null : p)),
  );
  for (const p of results) if (p) later.push(p);
  for (let i = 0; i < later.length; i += 100) {
    await env.TRAINING_QUEUE.sendBatch(
      later.slice(i, i + 100).map((body) => ({
        body,
        contentType: 'json' as const,
        delaySeconds: purgeRetryDelayS(1),
      })),
    );
  }
}
