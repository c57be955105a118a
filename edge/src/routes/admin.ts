import { createRoute, z } from '@hono/zod-openapi';
import { ApiKey, CreateApiKeyRequest, CreateTenantRequest, listOf, Tenant } from '@ladder/schemas';
import { registry } from '../durable-objects/worker-registry.ts';
import { notFound } from '../lib/errors.ts';
import { bearer, errorResponses, json, router } from '../lib/openapi.ts';
import { adminAuth } from '../middleware/auth/index.ts';
import {
  createApiKey,
  createTenant,
  listApiKeys,
  listTenants,
  loadTenant,
  revokeApiKey,
} from '../store/tenants.ts';

/** A GPU worker as the registry last heard of it. */
const WorkerStatus = z.object({
  object: z.literal('worker'),
  worker_id: z.string(),
  url: z.string(),
  backbone: z.string(),
  queue_depth: z.number().int(),
  max_queue: z.number().int(),
  running_jobs: z.number().int(),
  loaded_adapters: z.array(z.string()),
  /** Unix milliseconds of the last heartbeat, and its age when this answer was made. */
  last_seen: z.number().int(),
  heartbeat_age_s: z.number(),
});

/** Tenant and key management, and the worker registry's view, behind the admin token. */
export function adminRoutes() {
  const app = router();
  app.use('/admin/*', adminAuth());

  app.openapi(
    createRoute({
      method: 'get',
      path: '/admin/v1/tenants',
      security: bearer,
      description: 'Every tenant, oldest first.',
      responses: { 200: json(listOf(Tenant)), ...errorResponses },
    }),
    async (c) => c.json({ object: 'list' as const, data: await listTenants(c.env), has_more: false }, 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/admin/v1/workers',
      security: bearer,
      description:
        'The GPU workers in rotation (heard from within the heartbeat TTL): capacity, loaded adapters, heartbeat age.',
      responses: { 200: json(listOf(WorkerStatus)), ...errorResponses },
    }),
    async (c) => {
      const now = Date.now();
      const data = (await registry(c.env).healthy(now)).map((w) => ({
        object: 'worker' as const,
        ...w,
        heartbeat_age_s: Math.max(0, now - w.last_seen) / 1000,
      }));
      return c.json({ object: 'list' as const, data, has_more: false }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/admin/v1/tenants',
      security: bearer,
      request: { body: { content: { 'application/json': { schema: CreateTenantRequest } }, required: true } },
      responses: { 201: json(Tenant, 'Created'), ...errorResponses },
    }),
    async (c) => {
      const body = c.req.valid('json');
      return c.json(await createTenant(c.env, body.name, body.limits), 201);
    },
  );

  const TenantParam = z.object({ tenant: z.string().min(1).max(128) });

  app.openapi(
    createRoute({
      method: 'post',
      path: '/admin/v1/tenants/{tenant}/keys',
      security: bearer,
      request: {
        params: TenantParam,
        body: { content: { 'application/json': { schema: CreateApiKeyRequest } }, required: false },
      },
      responses: { 201: json(ApiKey, 'Created; `key` is shown only here'), ...errorResponses },
    }),
    async (c) => {
      const { tenant } = c.req.valid('param');
      if (!(await loadTenant(c.env, tenant))) throw notFound('tenant', tenant);
      const raw = await c.req.text();
      const body = CreateApiKeyRequest.parse(raw ? JSON.parse(raw) : {});
      return c.json(await createApiKey(c.env, tenant, body.name), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/admin/v1/tenants/{tenant}/keys',
      security: bearer,
      description: "A tenant's keys, revoked ones included; secrets are never shown again.",
      request: { params: TenantParam },
      responses: { 200: json(listOf(ApiKey)), ...errorResponses },
    }),
    async (c) => {
      const { tenant } = c.req.valid('param');
      if (!(await loadTenant(c.env, tenant))) throw notFound('tenant', tenant);
      return c.json(
        { object: 'list' as const, data: await listApiKeys(c.env, tenant), has_more: false },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/admin/v1/tenants/{tenant}/keys/{key}',
      security: bearer,
      request: { params: TenantParam.extend({ key: z.string().min(1).max(128) }) },
      responses: { 200: json(ApiKey, 'Revoked'), ...errorResponses },
    }),
    async (c) => {
      const { tenant, key } = c.req.valid('param');
      const revoked = await revokeApiKey(c.env, tenant, key);
      if (!revoked) throw notFound('api_key', key);
      return c.json(revoked, 200);
    },
  );
  return app;
}
