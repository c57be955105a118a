import { createRoute, z } from '@hono/zod-openapi';
import { Heartbeat, JobEvent, JobEventAck } from '@ladder/schemas';
import { registry } from '../durable-objects/worker-registry.ts';
import { applyJobEvent } from '../jobs/events.ts';
import { ApiException, notFound, unauthorized } from '../lib/errors.ts';
import { verifyFileUrl } from '../lib/file-urls.ts';
import { errorResponses, json, router } from '../lib/openapi.ts';
import { parseJson, verifiedWorkerRequest } from '../lib/worker-client.ts';
import { getFile } from '../store/files.ts';
import { getJob } from '../store/jobs.ts';
import { refuseReplay } from '../store/signatures.ts';

/** A worker acting for another worker's id, or on a job it does not hold. */
const notThisWorkers = (message: string, param: string) =>
  new ApiException(403, message, 'permission_error', 'worker_mismatch', param);

/**
 * What GPU workers call: heartbeats and job callbacks (HMAC-signed with the calling worker's own
 * secret, x-ladder-worker naming it; each signature accepted once), and
 * the training-file download (a signed, expiring URL the edge handed out in StartJobRequest).
 * Bodies are read raw (the signature covers the exact bytes), then validated.
 */
export function internalRoutes() {
  const app = router();
  // Documented here, checked by verifiedWorkerRequest (a missing one is a 401, not a 400).
  const signed = {
    'x-ladder-signature': z.string().optional(),
    'x-ladder-timestamp': z.string().optional(),
    'x-ladder-worker': z.string().optional(),
  };

  app.openapi(
    createRoute({
      method: 'post',
      path: '/internal/v1/workers/heartbeat',
      description: 'A worker registers or refreshes itself; one that misses heartbeats leaves the rotation.',
      // The body (a Heartbeat) is read raw: the signature covers its exact bytes.
      request: { headers: z.object(signed) },
      responses: { 200: json(z.object({ ok: z.boolean(), workers: z.number() })), ...errorResponses },
    }),
    async (c) => {
      const signed = await verifiedWorkerRequest(c.env, c.req);
      await refuseReplay(c.env, signed);
      const hb = Heartbeat.parse(parseJson(signed.body));
      // Only a worker's own credential registers its id (and the URL its traffic goes to).
      if (hb.worker_id !== signed.workerId) {
        throw notThisWorkers(
          `worker ${signed.workerId} cannot register worker id ${hb.worker_id}`,
          'worker_id',
        );
      }
      const { workers } = await registry(c.env).heartbeat(hb, Date.now());
      return c.json({ ok: true, workers }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/internal/v1/jobs/{job_id}/events',
      description:
        "Progress and final events of a job. Idempotent by event_id. The answer carries the job's status at the edge: a worker stops a job the edge calls cancelled, failed or succeeded (a cancel it was never told of).",
      request: {
        params: z.object({ job_id: z.string() }),
        headers: z.object(signed),
        // The body (a JobEvent) is read raw: the signature covers its exact bytes.
      },
      responses: {
        200: json(JobEventAck),
        ...errorResponses,
      },
    }),
    async (c) => {
      const signed = await verifiedWorkerRequest(c.env, c.req);
      await refuseReplay(c.env, signed);
      const event = JobEvent.parse(parseJson(signed.body));
      const { job_id } = c.req.valid('param');
      if (event.job_id !== job_id) {
        throw new ApiException(
          400,
          `event.job_id ${event.job_id} is not ${job_id}`,
          'invalid_request_error',
          'job_mismatch',
          'job_id',
        );
      }
      const job = await getJob(c.env, event.tenant, job_id);
      if (!job) throw notFound('fine_tuning_job', job_id, 'job_id');
      // Once dispatched, a job's events come from the worker that holds it. (While the dispatch
      // is in flight the row is still queued and names no worker, or the previous attempt's.)
      if (job.worker_id && job.worker_id !== signed.workerId && job.status !== 'queued') {
        throw notThisWorkers(`job ${job_id} is held by another worker, not ${signed.workerId}`, 'job_id');
      }
      return c.json({ ok: true, ...(await applyJobEvent(c.env, job, event)) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/internal/v1/files/{file_id}/content',
      request: {
        params: z.object({ file_id: z.string() }),
        query: z.object({
          tenant: z.string().optional(),
          expires: z.string().optional(),
          sig: z.string().optional(),
        }),
      },
      responses: { 200: { description: 'The JSONL bytes' }, ...errorResponses },
    }),
    async (c) => {
      const { file_id } = c.req.valid('param');
      const v = await verifyFileUrl(c.env, file_id, c.req.valid('query'));
      if (!v.ok) throw unauthorized(`Bad file URL: ${v.reason}.`);
      const row = await getFile(c.env, v.tenant, file_id);
      const obj = row && (await c.env.FILES.get(row.r2_key));
      if (!obj) throw notFound('file', file_id, 'file_id');
      return c.body(obj.body, 200, {
        'content-type': 'application/jsonl',
        'content-length': String(obj.size),
        'x-ladder-sha256': row.sha256,
      });
    },
  );
  return app;
}
