import { createRoute, z } from '@hono/zod-openapi';
import {
  CreateFineTuningJobRequest,
  FineTuningJob,
  ListQuery,
  listOf,
  parseFineTuningJobRequest,
  sha256Hex,
} from '@ladder/schemas';
import { createJob, findByKey } from '../jobs/create.ts';
import { conflict, invalidRequest } from '../lib/errors.ts';
import { bearer, errorResponses, json, router } from '../lib/openapi.ts';
import { type JobRow, jobObject } from '../store/jobs.ts';
import { jobControlRoutes } from './job-control.ts';
import { JobParam, jobIdOf, mustGetJob } from './job-param.ts';
import { jobProgressRoutes } from './job-progress.ts';

/** `/v1/fine_tuning/jobs`: create, list and read here; control and progress in their own files. */
export function jobRoutes() {
  const app = router();

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/fine_tuning/jobs',
      security: bearer,
      description:
        "Create a job. `method` as OpenAI's client sends it (`{type: 'supervised', supervised: {hyperparameters}}`; supervised trains an LST side net), or `{type: 'lst' | 'xladder', lst | xladder: {hyperparameters}}`, or `{type, hyperparameters}`; the deprecated top-level `hyperparameters` too. Each hyperparameter is `'auto'` or a value. With `Idempotency-Key`, the same key and body answer the same job; the same key with another body is a 409.",
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
      // The shape was checked by the route's schema; this reads what the request means.
      const raw: unknown = await c.req.json();
      const parsed = parseFineTuningJobRequest(raw);
      if (!parsed.ok) {
        const { message, param, code } = parsed.refusal;
        throw invalidRequest(message, param, code);
      }
      const key = c.req.valid('header')['idempotency-key'] ?? null;
      const requestHash = await sha256Hex(JSON.stringify(raw));
      const replay = (prior: JobRow) => {
        if (prior.request_hash !== requestHash) {
          throw conflict(
            `Idempotency-Key '${key}' was already used with a different request body.`,
            'idempotency_key_reused',
          );
        }
        return c.json(jobObject(prior), 200, { 'idempotent-replayed': 'true' });
      };
      const prior = key ? await findByKey(c.env, tenant.id, key) : null;
      if (prior) return replay(prior);
      const created = await createJob(c.env, tenant, parsed.spec, { key, requestHash });
      if (created.replayOf) return replay(created.replayOf);
      return c.json(jobObject(created.row), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/fine_tuning/jobs',
      security: bearer,
      description:
        'Newest first, paged by `after`. `metadata[<key>]=<value>` (as OpenAI clients send `metadata`) keeps the jobs whose metadata has that value.',
      request: { query: ListQuery },
      responses: { 200: json(listOf(FineTuningJob)), ...errorResponses },
    }),
    async (c) => {
      const { after, limit } = c.req.valid('query');
      const filters = Object.entries(c.req.query()).flatMap(([name, value]) => {
        const key = /^metadata\[(.+)\]$/.exec(name)?.[1];
        return key === undefined ? [] : [[JSON.stringify(key), value] as const];
      });
      const { results } = await c.env.DB.prepare(
        `SELECT * FROM jobs WHERE tenant_id = ? AND id < ?
         ${filters.map(() => "AND json_extract(metadata, '$.' || ?) = ?").join(' ')}
         ORDER BY id DESC LIMIT ?`,
      )
        .bind(c.get('tenant').id, after ?? '\uffff', ...filters.flat(), limit + 1)
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

  app.route('/', jobControlRoutes());
  app.route('/', jobProgressRoutes());
  return app;
}
