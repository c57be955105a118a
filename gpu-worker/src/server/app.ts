import { apiError, HealthStatus, LADDER_VERSION } from '@ladder/schemas';
import { Hono } from 'hono';

/** The worker's HTTP surface. Only wiring here; each route's work lives in its own module. */
export function createWorkerApp(opts: { startedAt?: number } = {}): Hono {
  const startedAt = opts.startedAt ?? Date.now();
  const app = new Hono();

  app.get('/healthz', (c) =>
    c.json(
      HealthStatus.parse({
        service: 'gpu-worker',
        status: 'ok',
        version: LADDER_VERSION,
        uptime_s: (Date.now() - startedAt) / 1000,
      }),
    ),
  );

  app.notFound((c) =>
    c.json(apiError(`no route for ${c.req.method} ${c.req.path}`, 'invalid_request_error', 'not_found'), 404),
  );
  app.onError((err, c) => c.json(apiError(err.message, 'server_error'), 500));
  return app;
}
