import { apiError, HealthStatus, LADDER_VERSION } from '@ladder/schemas';
import { Hono } from 'hono';

const isolateStartedAt = Date.now();

/** The public API. Only wiring here; routes and middleware live in their own modules. */
export function createEdgeApp(): Hono<{ Bindings: Env }> {
  const app = new Hono<{ Bindings: Env }>();

  app.get('/healthz', (c) =>
    c.json(
      HealthStatus.parse({
        service: 'edge',
        status: 'ok',
        version: LADDER_VERSION,
        uptime_s: (Date.now() - isolateStartedAt) / 1000,
      }),
    ),
  );

  app.notFound((c) =>
    c.json(apiError(`no route for ${c.req.method} ${c.req.path}`, 'invalid_request_error', 'not_found'), 404),
  );
  app.onError((err, c) => c.json(apiError(err.message, 'server_error'), 500));
  return app;
}
