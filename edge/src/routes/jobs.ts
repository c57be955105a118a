import { createRoute, z } from '@hono/zod-openapi';
import {
  CreateFineTuningJobRequest,
  FineTuningCheckpoint,
  FineTuningJob,
  FineTuningJobEvent,
  ListQuery,
  listOf,
  sha256Hex,
} from '@ladder/schemas';
import { streamSSE } from 'hono/streaming';
import { registry } from '../durable-objects/worker-registry.ts';
import { enqueueJob } from '../jobs/queue-message.ts';
import { config } from '../lib/config.ts';
import { ApiException, conflict, invalidRequest, notFound } from '../lib/errors.ts';
import { newId, unixSeconds } from '../lib/ids.ts';
import { bearer, errorResponses, IdParam, json, router } from '../lib/openapi.ts';
import { getFile } from '../store/files.ts';
import { addEvent, getJob, type JobRow, jobObject, listEvents, TERMINAL } from '../store/jobs.ts';

const JobParam = IdParam('job_id');
const jobIdOf = (p: Record<string, string>) => p.job_id as string;
const SSE_POLL_MS = 1000;
const SSE_MAX_MS = 5 * 60_000;

export function jobRoutes() {
  const app = router();

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/fine_tuning/jobs',
      security: bearer,
      description:
        'Create a job. With `Idempotency-Key`, the same key and body answer the same job; the same key with another body is a 409.',
      request: {
        headers: z.object({ 'idempotency-key': z.string().min(1).max(256).optional() }),
        body: { content: { 'application/json': { schema: CreateFineTuningJobRequest } }, required: true },
      },
      responses: {
        200: json(FineTuningJob),
        409: json(z.any(), 'Idempotency-Key reused with another body'),
        ...errorResponses,
      },
    }),
    async (c) => {
      const tenant = c.get('tenant');
      const body = c.req.valid('json');
      const key = c.req.valid('header')['idempotency-key'] ?? null;
      const requestHash = await sha256Hex(JSON.stringify(body));
      if (key) {
        const prior = await findByKey(c.env, tenant.id, key);
        if (prior) return replay(prior, requestHash);
      }
      if (!config(c.env).backbones.includes(body.model)) {
        throw invalidRequest(
          `Model '${body.model}' is not a backbone this platform trains on (${config(c.env).backbones.join(', ')}).`,
          'model',
          'model_not_found',
        );
      }
      for (const [param, id] of [
        ['training_file', body.training_file],
        ['validation_file', body.validation_file],
      ] as const) {
        if (id && !(await getFile(c.env, tenant.id, id))) throw notFound('file', id, param);
      }
      const counts = await c.env.DB.prepare(
        `SELECT (SELECT COUNT(*) FROM jobs WHERE tenant_id = ?1 AND status IN ('queued', 'running')) AS active,
                (SELECT COUNT(*) FROM adapters WHERE tenant_id = ?1 AND deleted_at IS NULL) AS adapters`,
      )
        .bind(tenant.id)
        .first<{ active: number; adapters: number }>();
      const { active = 0, adapters = 0 } = counts ?? {};
      if (active >= tenant.limits.concurrent_jobs) {
        throw new ApiException(
          429,
          `Quota: at most ${tenant.limits.concurrent_jobs} concurrent fine-tuning jobs.`,
          'quota_exceeded',
          'concurrent_jobs_quota',
        );
      }
      if (adapters + active >= tenant.limits.max_adapters) {
        throw new ApiException(
          429,
          `Quota: at most ${tenant.limits.max_adapters} adapters (delete one first).`,
          'quota_exceeded',
          'adapter_quota',
        );
      }

      const row: JobRow = {
        id: newId('ftjob'),
        tenant_id: tenant.id,
        model: body.model,
        training_file: body.training_file,
        validation_file: body.validation_file ?? null,
        method: JSON.stringify(body.method),
        suffix: body.suffix ?? null,
        seed: body.seed ?? Math.floor(Math.random() * 2 ** 31),
        metadata: body.metadata ? JSON.stringify(body.metadata) : null,
        status: 'queued',
        attempt: 1,
        worker_id: null,
        error: null,
        fine_tuned_model: null,
        trained_tokens: null,
        idempotency_key: key,
        request_hash: requestHash,
        created_at: unixSeconds(),
        started_at: null,
        finished_at: null,
      };
      try {
        await c.env.DB.prepare(
          `INSERT INTO jobs (id, tenant_id, model, training_file, validation_file, method, suffix, seed, metadata,
             status, attempt, idempotency_key, request_hash, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', 1, ?, ?, ?)`,
        )
          .bind(
            row.id,
            row.tenant_id,
            row.model,
            row.training_file,
            row.validation_file,
            row.method,
            row.suffix,
            row.seed,
            row.metadata,
            key,
            requestHash,
            row.created_at,
          )
          .run();
      } catch (err) {
        // A concurrent request with the same key won the insert: answer as its replay.
        const prior = key ? await findByKey(c.env, tenant.id, key) : null;
        if (prior) return replay(prior, requestHash);
        throw err;
      }
      await addEvent(c.env, {
        id: `${row.id}-created`,
        job_id: row.id,
        tenant_id: tenant.id,
        type: 'created',
        message: 'Created fine-tuning job',
      });
      await enqueueJob(c.env, { job_id: row.id, tenant: tenant.id, attempt: 1 });
      return c.json(jobObject(row), 200);

      function replay(prior: JobRow, hash: string) {
        if (prior.request_hash !== hash) {
          throw conflict(
            `Idempotency-Key '${key}' was already used with a different request body.`,
            'idempotency_key_reused',
          );
        }
        return c.json(jobObject(prior), 200, { 'idempotent-replayed': 'true' });
      }
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/fine_tuning/jobs',
      security: bearer,
      request: { query: ListQuery },
      responses: { 200: json(listOf(FineTuningJob)), ...errorResponses },
    }),
    async (c) => {
      const { after, limit } = c.req.valid('query');
      const { results } = await c.env.DB.prepare(
        'SELECT * FROM jobs WHERE tenant_id = ? AND id < ? ORDER BY id DESC LIMIT ?',
      )
        .bind(c.get('tenant').id, after ?? '\uffff', limit + 1)
        .all<JobRow>();
      return c.json(
        {
          object: 'list' as const,
          data: results.slice(0, limit).map(jobObject),
          has_more: results.length > limit,
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/fine_tuning/jobs/{job_id}',
      security: bearer,
      request: { params: JobParam },
      responses: { 200: json(FineTuningJob), ...errorResponses },
    }),
    async (c) =>
      c.json(jobObject(await mustGetJob(c.env, c.get('tenant').id, jobIdOf(c.req.valid('param')))), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/fine_tuning/jobs/{job_id}/cancel',
      security: bearer,
      description:
        'Cancels a queued or running job; the worker learns it from the answer to its next progress callback.',
      request: { params: JobParam },
      responses: { 200: json(FineTuningJob), ...errorResponses },
    }),
    async (c) => {
      const job = await mustGetJob(c.env, c.get('tenant').id, jobIdOf(c.req.valid('param')));
      if (TERMINAL.has(job.status)) {
        throw invalidRequest(
          `Job ${job.id} has already ${job.status === 'cancelled' ? 'been cancelled' : job.status}.`,
          null,
          'job_not_cancellable',
        );
      }
      await c.env.DB.prepare(
        `UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ? AND status IN ('queued', 'running')`,
      )
        .bind(unixSeconds(), job.id)
        .run();
      await registry(c.env).release(job.id);
      await addEvent(c.env, {
        id: `${job.id}-cancelled`,
        job_id: job.id,
        tenant_id: job.tenant_id,
        type: 'cancelled',
        message: 'Job cancelled by the tenant',
      });
      return c.json(jobObject((await getJob(c.env, job.tenant_id, job.id))!), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/fine_tuning/jobs/{job_id}/events',
      security: bearer,
      description:
        'Events oldest first. With `stream=true` (or `Accept: text/event-stream`), server-sent events until the job ends.',
      request: {
        params: JobParam,
        query: ListQuery.extend({ stream: z.enum(['true', 'false']).optional() }),
      },
      responses: { 200: json(listOf(FineTuningJobEvent)), ...errorResponses },
    }),
    async (c) => {
      const tenant = c.get('tenant').id;
      const job = await mustGetJob(c.env, tenant, jobIdOf(c.req.valid('param')));
      const q = c.req.valid('query');
      let afterSeq = 0;
      if (q.after) {
        const row = await c.env.DB.prepare('SELECT seq FROM job_events WHERE id = ? AND job_id = ?')
          .bind(q.after, job.id)
          .first<{ seq: number }>();
        if (!row) throw notFound('event', q.after, 'after');
        afterSeq = row.seq;
      }
      const wantsStream = q.stream === 'true' || (c.req.header('accept') ?? '').includes('text/event-stream');
      if (!wantsStream) {
        const page = await listEvents(c.env, tenant, job.id, afterSeq, q.limit + 1);
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
          for (const { seq, event } of await listEvents(c.env, tenant, job.id, afterSeq, 100)) {
            await stream.writeSSE({
              id: event.id,
              event: 'fine_tuning.job.event',
              data: JSON.stringify(event),
            });
            afterSeq = seq;
          }
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
      request: { params: JobParam, query: ListQuery },
      responses: { 200: json(listOf(FineTuningCheckpoint)), ...errorResponses },
    }),
    async (c) => {
      const tenant = c.get('tenant').id;
      const job = await mustGetJob(c.env, tenant, jobIdOf(c.req.valid('param')));
      const { limit } = c.req.valid('query');
      const { results } = await c.env.DB.prepare(
        'SELECT * FROM checkpoints WHERE job_id = ? AND tenant_id = ? ORDER BY step DESC LIMIT ?',
      )
        .bind(job.id, tenant, limit + 1)
        .all<{ id: string; step: number; metrics: string; created_at: number }>();
      const data = results.slice(0, limit).map((r) => ({
        id: r.id,
        object: 'fine_tuning.job.checkpoint' as const,
        created_at: r.created_at,
        fine_tuning_job_id: job.id,
        step_number: r.step,
        metrics: JSON.parse(r.metrics) as Record<string, number | null>,
      }));
      return c.json({ object: 'list' as const, data, has_more: results.length > limit }, 200);
    },
  );
  return app;
}

function findByKey(env: Env, tenant: string, key: string): Promise<JobRow | null> {
  return env.DB.prepare('SELECT * FROM jobs WHERE tenant_id = ? AND idempotency_key = ?')
    .bind(tenant, key)
    .first<JobRow>();
}

async function mustGetJob(env: Env, tenant: string, id: string): Promise<JobRow> {
  const job = await getJob(env, tenant, id);
  if (!job) throw notFound('fine_tuning_job', id, 'job_id');
  return job;
}
