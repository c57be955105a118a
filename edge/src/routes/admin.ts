import { createRoute, z } from '@hono/zod-openapi';
import { ApiKey, CreateApiKeyRequest, CreateTenantRequest, Tenant } from '@ladder/schemas';
import { adminAuth } from '../lib/auth.ts';
import { notFound } from '../lib/errors.ts';
import { bearer, errorResponses, json, router } from '../lib/openapi.ts';
import { createApiKey, createTenant, loadTenant, revokeApiKey } from '../store/tenants.ts';

/** Tenant and key management, behind the admin token. */
export function adminRoutes() {
  const app = router();
  app.use('/admin/*', adminAuth());

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
