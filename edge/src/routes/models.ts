import { createRoute, z } from '@hono/zod-openapi';
import { listOf, ModelObject } from '@ladder/schemas';
import { registry } from '../durable-objects/worker-registry.ts';
import { purgeOnWorkers } from '../jobs/purge.ts';
import { config } from '../lib/config.ts';
import { invalidRequest, notFound } from '../lib/errors.ts';
import { unixSeconds } from '../lib/ids.ts';
import { bearer, errorResponses, IdParam, json, router } from '../lib/openapi.ts';
import { adapterModel, findAdapter, listAdapters } from '../store/adapters.ts';

const backboneModel = (id: string): ModelObject => ({
  id,
  object: 'model',
  created: 0,
  owned_by: 'ladder',
  backbone: id,
  kind: 'backbone',
});

/** The configured backbones that some live worker serves: the only ones a request can run on. */
async function servedBackbones(env: Env): Promise<string[]> {
  const served = new Set((await registry(env).healthy(Date.now())).map((w) => w.backbone));
  return config(env).backbones.filter((b) => served.has(b));
}

export function modelRoutes() {
  const app = router();
  const ModelParam = IdParam('model');

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/models',
      security: bearer,
      description: "The backbones that a live worker serves, then the tenant's adapters.",
      responses: { 200: json(listOf(ModelObject)), ...errorResponses },
    }),
    async (c) => {
      const adapters = await listAdapters(c.env, c.get('tenant').id);
      const backbones = await servedBackbones(c.env);
      const data = [...backbones.map(backboneModel), ...adapters.map(adapterModel)];
      return c.json({ object: 'list' as const, data, has_more: false }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/models/{model}',
      security: bearer,
      request: { params: ModelParam },
      responses: { 200: json(ModelObject), ...errorResponses },
    }),
    async (c) => {
      const id = c.req.valid('param').model as string;
      if ((await servedBackbones(c.env)).includes(id)) return c.json(backboneModel(id), 200);
      const row = await findAdapter(c.env, c.get('tenant').id, id);
      if (!row) throw notFound('model', id, 'model');
      return c.json(adapterModel(row), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/models/{model}',
      security: bearer,
      description:
        "Deletes one of the tenant's adapters (backbones cannot be deleted), and on the GPU workers its weights, its job's checkpoints and cached training data.",
      request: { params: ModelParam },
      responses: {
        200: json(z.object({ id: z.string(), object: z.literal('model'), deleted: z.boolean() })),
        ...errorResponses,
      },
    }),
    async (c) => {
      const id = c.req.valid('param').model as string;
      if (config(c.env).backbones.includes(id))
        throw invalidRequest('A backbone cannot be deleted.', 'model', 'model_not_deletable');
      const tenant = c.get('tenant').id;
      const row = await findAdapter(c.env, tenant, id);
      const res = await c.env.DB.prepare(
        'UPDATE adapters SET deleted_at = ? WHERE tenant_id = ? AND model_id = ? AND deleted_at IS NULL',
      )
        .bind(unixSeconds(), tenant, id)
        .run();
      if (!row || res.meta.changes === 0) throw notFound('model', id, 'model');
      const job = await c.env.DB.prepare('SELECT worker_id FROM jobs WHERE id = ?')
        .bind(row.job_id)
        .first<{ worker_id: string | null }>();
      await purgeOnWorkers(
        c.env,
        [{ tenant, job_id: row.job_id, adapter: { adapter_id: row.id, version: row.version } }],
        [job?.worker_id ?? null],
      );
      return c.json({ id, object: 'model' as const, deleted: true }, 200);
    },
  );
  return app;
}
