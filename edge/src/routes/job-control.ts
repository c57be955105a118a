import { createRoute } from '@hono/zod-openapi';
import { FineTuningJob } from '@ladder/schemas';
import type { Context } from 'hono';
import { registry } from '../durable-objects/worker-registry.ts';
import { enqueueJob } from '../jobs/queue-message.ts';
import { tellWorker } from '../jobs/worker-control.ts';
import { invalidRequest } from '../lib/errors.ts';
import { unixSeconds } from '../lib/ids.ts';
import { bearer, errorResponses, json, router } from '../lib/openapi.ts';
import type { AppEnv } from '../lib/types.ts';
import { addJobEvent, getJob, type JobRow, jobObject, TERMINAL, UNFINISHED_SQL } from '../store/jobs.ts';
import { JobParam, jobIdOf, mustGetJob } from './job-param.ts';

const controlRoute = (action: string, description: string) =>
  createRoute({
    method: 'post',
    path: `/v1/fine_tuning/jobs/{job_id}/${action}`,
    security: bearer,
    description,
    request: { params: JobParam },
    responses: { 200: json(FineTuningJob), ...errorResponses },
  });

/** Cancel, pause and resume: the edge changes the job's status, then tells its worker. */
export function jobControlRoutes() {
  const app = router();

  app.openapi(
    controlRoute(
      'cancel',
      'Cancels a job that has not finished. Its worker is told at once, and otherwise learns it from the answer to its next progress callback, and stops. ' +
        'The training done before the stop is billed (training tokens, once per job; `trained_tokens` shows it). ' +
        'A run that finished before its worker heard of the cancel is billed the same way, and its adapter is deleted, not registered: the job stays cancelled.',
    ),
    async (c) => {
      const job = await jobOf(c);
      if (TERMINAL.has(job.status)) {
        throw invalidRequest(
          `Job ${job.id} has already ${job.status === 'cancelled' ? 'been cancelled' : job.status}.`,
          'job_id',
          'job_not_cancellable',
        );
      }
      await c.env.DB.prepare(
        `UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ? AND status IN (${UNFINISHED_SQL})`,
      )
        .bind(unixSeconds(), job.id)
        .run();
      await registry(c.env).release(job.id);
      // Not `<job>-cancelled`: that is the id of the worker's own cancelled event, which bills.
      await addJobEvent(c.env, job, 'cancel-requested', {
        type: 'cancelled',
        message: 'Fine-tuning job cancelled',
      });
      c.executionCtx.waitUntil(tellWorker(c.env, job, 'cancel'));
      return c.json(jobObject(await reread(c.env, job)), 200);
    },
  );

  app.openapi(
    controlRoute(
      'pause',
      'Pauses a running job: its worker saves a checkpoint and stops. `resume` goes on from that checkpoint.',
    ),
    async (c) => {
      const job = await jobOf(c);
      const res = await c.env.DB.prepare(
        `UPDATE jobs SET status = 'paused', estimated_finish = NULL WHERE id = ? AND attempt = ? AND status = 'running'`,
      )
        .bind(job.id, job.attempt)
        .run();
      if (res.meta.changes === 0) {
        throw invalidRequest(
          `Job ${job.id} is ${job.status}: only a running job can be paused.`,
          'job_id',
          'job_not_pausable',
        );
      }
      // No lease while paused: a paused job makes no progress and must not be re-dispatched for it.
      await registry(c.env).release(job.id);
      await addJobEvent(c.env, job, `pause-${job.attempt}`, {
        type: 'pause_requested',
        message: 'Pausing fine-tuning job: the worker saves a checkpoint and stops',
      });
      c.executionCtx.waitUntil(tellWorker(c.env, job, 'pause'));
      return c.json(jobObject(await reread(c.env, job)), 200);
    },
  );

  app.openapi(
    controlRoute(
      'resume',
      'Resumes a paused job: it is queued again, and the worker that takes it goes on from its last checkpoint.',
    ),
    async (c) => {
      const job = await jobOf(c);
      const attempt = job.attempt + 1;
      const res = await c.env.DB.prepare(
        `UPDATE jobs SET status = 'queued', attempt = ?, resumes = resumes + 1, worker_id = NULL
         WHERE id = ? AND attempt = ? AND status = 'paused'`,
      )
        .bind(attempt, job.id, job.attempt)
        .run();
      if (res.meta.changes === 0) {
        throw invalidRequest(
          `Job ${job.id} is ${job.status}: only a paused job can be resumed.`,
          'job_id',
          'job_not_resumable',
        );
      }
      await addJobEvent(c.env, job, `resume-${attempt}`, {
        type: 'resumed',
        message: 'Fine-tuning job resumed',
      });
      await enqueueJob(c.env, { job_id: job.id, tenant: job.tenant_id, attempt });
      return c.json(jobObject(await reread(c.env, job)), 200);
    },
  );
  return app;
}

function jobOf(c: Context<AppEnv>): Promise<JobRow> {
  return mustGetJob(c.env, c.get('tenant').id, jobIdOf(c.req.param()));
}

async function reread(env: Env, job: JobRow): Promise<JobRow> {
  return (await getJob(env, job.tenant_id, job.id)) ?? job;
}
