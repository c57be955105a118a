import { apiError, HealthStatus, LADDER_VERSION } from '@ladder/schemas';
import { requireConfig } from './lib/config.ts';
import { renderError } from './lib/errors.ts';
import { router } from './lib/openapi.ts';
import { tenantAuth } from './middleware/auth/index.ts';
import { rateLimit } from './middleware/rate-limit/index.ts';
import { adminRoutes } from './routes/admin.ts';
import { completionRoutes } from './routes/completions.ts';
import { fileRoutes } from './routes/files.ts';
import { internalRoutes } from './routes/internal.ts';
import { jobRoutes } from './routes/jobs.ts';
import { modelRoutes } from './routes/models.ts';
import { usageRoutes } from './routes/usage.ts';

const isolateStartedAt = Date.now();
const SPENDS_TOKENS = new Set(['/v1/chat/completions', '/v1/completions']);

/** The public API, the admin API and the workers' internal API. Only wiring here. */
export function createEdgeApp() {
  const app = router();

  app.use('*', requireConfig());
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

  app.use('/v1/*', tenantAuth(), rateLimit({ spendsTokens: (path) => SPENDS_TOKENS.has(path) }));
  app.route('/', adminRoutes());
  app.route('/', fileRoutes());
  app.route('/', jobRoutes());
  app.route('/', modelRoutes());
  app.route('/', completionRoutes());
  app.route('/', usageRoutes());
  app.route('/', internalRoutes());

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: { title: 'Ladder edge API', version: LADDER_VERSION },
  });

  app.notFound((c) =>
    c.json(apiError(`no route for ${c.req.method} ${c.req.path}`, 'invalid_request_error', 'not_found'), 404),
  );
  app.onError(renderError);
  return app;
}
