import { createRoute, z } from '@hono/zod-openapi';
import {
  CheckpointMetrics,
  FineTuningCheckpoint,
  FineTuningJobEvent,
  ListQuery,
  listOf,
} from '@ladder/schemas';
import { streamSSE } from 'hono/streaming';
import { notFound } from '../lib/errors.ts';
import { bearer, errorResponses, json, router } from '../lib/openapi.ts';
import { adapterModelId } from '../store/adapters.ts';
import { getJob, listEvents, TERMINAL } from '../store/jobs.ts';
import { JobParam, jobIdOf, mustGetJob } from './job-param.ts';

const SSE_POLL_MS = 1000;
const SSE_MAX_MS = 5 * 60_000;

/** A job's events (a page, or a live stream) and its checkpoints. */
export function jobProgressRoutes() {
  const app = router();

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/fine_tuning/jobs/{job_id}/events',
      security: bearer,
      description:
        "Events newest first, as OpenAI pages them (`after`: the last event of the previous page). `type: 'metrics'` events carry a step's figures in `data`. With `stream=true` (or `Accept: text/event-stream`), server-sent events oldest first until the job ends, starting after `Last-Event-ID` (or `after`) when given.",
      request: {
        params: JobParam,
        query: ListQuery.extend({ stream: z.enum(['true', 'false']).optional() }),
        headers: z.object({ 'last-event-id': z.string().max(256).optional() }),
      },
      responses: { 200: json(listOf(FineTuningJobEvent)), ...errorResponses },
    }),
    async (c) => {
      const tenant = c.get('tenant').id;
      const job = await mustGetJob(c.env, tenant, jobIdOf(c.req.valid('param')));
      const q = c.req.valid('query');
      const wantsStream = q.stream === 'true' || (c.req.header('accept') ?? '').includes('text/event-stream');
      const cursorId = (wantsStream ? c.req.valid('header')['last-event-id'] : undefined) ?? q.after;
      let cursorSeq: number | null = null;
      if (cursorId) {
        const row = await c.env.DB.prepare('SELECT seq FROM job_events WHERE id = ? AND job_id = ?')
          .bind(cursorId, job.id)
          .first<{ seq: number }>();
        if (!row) throw notFound('event', cursorId, q.after === cursorId ? 'after' : 'last-event-id');
        cursorSeq = row.seq;
      }
      if (!wantsStream) {
        const page = await listEvents(c.env, tenant, job.id, {
          order: 'newest',
          cursorSeq,
          limit: q.limit + 1,
        });
        return c.json(
          {
            object: 'list' as const,
            data: page.slice(0, q.limit).map((p) => p.event),
            has_more: page.length > q.limit,
          },
          200,
        );
      }
      return streamSSE(c, async (stream) => {
        const deadline = Date.now() + SSE_MAX_MS;
        for (;;) {
          // Read the status before the events, so no event written before the job ended is missed.
          const status = (await getJob(c.env, tenant, job.id))?.status ?? 'failed';
          const page = await listEvents(c.env, tenant, job.id, { order: 'oldest', cursorSeq, limit: 100 });
          for (const { seq, event } of page) {
            await stream.writeSSE({
              id: event.id,
              event: 'fine_tuning.job.event',
              data: JSON.stringify(event),
            });
            cursorSeq = seq;
          }
          if (page.length === 100) continue;
          if (TERMINAL.has(status) || Date.now() > deadline || stream.aborted) break;
          await stream.sleep(SSE_POLL_MS);
        }
        await stream.writeSSE({ data: '[DONE]' });
      }) as unknown as never;
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/fine_tuning/jobs/{job_id}/checkpoints',
      security: bearer,
      description:
        'Checkpoints newest first, each with the step metrics the worker measured when it saved it (`after`: the last checkpoint of the previous page).',
      request: { params: JobParam, query: ListQuery },
      responses: { 200: json(listOf(FineTuningCheckpoint)), ...errorResponses },
    }),
    async (c) => {
      const tenant = c.get('tenant').id;
      const job = await mustGetJob(c.env, tenant, jobIdOf(c.req.valid('param')));
      const { after, limit } = c.req.valid('query');
      let beforeStep = Number.MAX_SAFE_INTEGER;
      if (after) {
        const row = await c.env.DB.prepare('SELECT step FROM checkpoints WHERE id = ? AND job_id = ?')
          .bind(after, job.id)
          .first<{ step: number }>();
        if (!row) throw notFound('checkpoint', after, 'after');
        beforeStep = row.step;
      }
      const { results } = await c.env.DB.prepare(
        'SELECT * FROM checkpoints WHERE job_id = ? AND tenant_id = ? AND step < ? ORDER BY step DESC LIMIT ?',
      )
        .bind(job.id, tenant, beforeStep, limit + 1)
        .all<{ id: string; step: number; metrics: string; created_at: number }>();
      // The adapter takes the job's id (gpu-worker's runner), so its model name is known before it exists.
      const model = job.fine_tuned_model ?? adapterModelId(job.model, job.suffix, job.id);
      const data = results.slice(0, limit).map((r) => ({
        id: r.id,
        object: 'fine_tuning.job.checkpoint' as const,
        created_at: r.created_at,
        fine_tuned_model_checkpoint: `${model}:ckpt-step-${r.step}`,
        fine_tuning_job_id: job.id,
        step_number: r.step,
        metrics: checkpointMetrics(r.step, r.metrics),
      }));
      return c.json({ object: 'list' as const, data, has_more: results.length > limit }, 200);
    },
  );
  return app;
}

/** The stored figures without the ones not measured (OpenAI's checkpoint metrics are numbers). */
function checkpointMetrics(step: number, stored: string): CheckpointMetrics {
  const numbers = Object.entries(JSON.parse(stored) as Record<string, unknown>).filter(
    ([, v]) => typeof v === 'number',
  );
  return CheckpointMetrics.parse({ ...Object.fromEntries(numbers), step });
}
