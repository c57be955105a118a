import { PurgeRequest, PurgeResponse, SafeId, StartJobRequest, StartJobResponse } from '@ladder/schemas';
import type { Hono } from 'hono';
import { JobRefusedError, type JobRunner } from '../../jobs/index.ts';
import type { Serving } from '../../serving/index.ts';
import { HttpError, parseBody } from '../errors.ts';

const STATUS = { invalid_side_net: 400, insufficient_memory: 422, job_conflict: 409 } as const;

function jobId(raw: string): string {
  const parsed = SafeId.safeParse(raw);
  if (!parsed.success)
    throw new HttpError(400, `job id: ${parsed.error.issues[0]?.message}`, 'invalid_request');
  return parsed.data;
}

/**
 * POST /internal/v1/jobs (idempotent by job id), GET /internal/v1/jobs/:id, POST .../cancel,
 * POST .../pause, and POST /internal/v1/purge (a deleted model's or file's data).
 */
export function jobRoutes(
  app: Hono,
  jobs: () => JobRunner,
  serving: () => Serving | undefined = () => undefined,
) {
  app.post('/internal/v1/jobs', async (c) => {
    const req = await parseBody(c, StartJobRequest);
    try {
      return c.json(StartJobResponse.parse(await jobs().start(req)));
    } catch (e) {
      if (e instanceof JobRefusedError) throw new HttpError(STATUS[e.code], e.message, e.code);
      throw e;
    }
  });

  app.get('/internal/v1/jobs/:id', (c) => {
    const id = jobId(c.req.param('id'));
    const view = jobs().status(id);
    if (!view) throw new HttpError(404, `no job ${id} on this worker`, 'job_not_found');
    return c.json(view);
  });

  app.post('/internal/v1/jobs/:id/cancel', (c) => {
    const id = jobId(c.req.param('id'));
    const view = jobs().cancel(id);
    if (!view) throw new HttpError(404, `no job ${id} on this worker`, 'job_not_found');
    return c.json(view);
  });

  // Checkpoints at the next step boundary and stops; a StartJobRequest with a higher attempt resumes.
  app.post('/internal/v1/jobs/:id/pause', (c) => {
    const id = jobId(c.req.param('id'));
    const view = jobs().pause(id);
    if (!view) throw new HttpError(404, `no job ${id} on this worker`, 'job_not_found');
    return c.json(view);
  });

  // The edge deleted a model or a training file: drop what this worker keeps of the job, and the
  // adapter from memory (a request in flight keeps its lease until it ends).
  app.post('/internal/v1/purge', async (c) => {
    const req = await parseBody(c, PurgeRequest);
    const report = await jobs().purge(req.tenant, req.job_id, req.adapter?.adapter_id);
    if (!report) throw new HttpError(409, `job ${req.job_id} belongs to another tenant`, 'job_conflict');
    if (req.adapter)
      serving()?.cache.invalidate({
        tenant: req.tenant,
        adapterId: req.adapter.adapter_id,
        version: req.adapter.version,
      });
    return c.json(
      PurgeResponse.parse({
        job_id: req.job_id,
        adapter_versions: report.adapterVersions,
        checkpoints: report.checkpoints,
        datasets: report.datasets,
      }),
    );
  });
}
