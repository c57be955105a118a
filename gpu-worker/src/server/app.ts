import { apiError, HealthStatus, LADDER_VERSION } from '@ladder/schemas';
import { Hono } from 'hono';
import { DEV_WORKER_SECRET } from '../config.ts';
import type { JobRunner } from '../jobs/index.ts';
import { type Serving, type WorkerMetrics, workerMetrics } from '../serving/index.ts';
import { errorResponse, HttpError } from './errors.ts';
import { jobRoutes } from './routes/jobs.ts';
import { servingRoutes } from './routes/serving.ts';
import { signedRequests } from './signature.ts';

export interface WorkerServices {
  secret: string;
  /** This worker's id (x-ladder-worker on a request must name it). */
  workerId: string | undefined;
  /** The largest signed request body read. */
  maxBodyBytes: number;
  metrics: WorkerMetrics;
  startedAt: number;
  /** The serving stack once open; undefined before (or without a backbone). */
  serving(): Serving | undefined;
  jobs(): JobRunner | undefined;
  /** Why the worker cannot take work yet; undefined when it can. */
  notReady(): string | undefined;
}

/** The worker's HTTP surface: health and metrics open, everything under /internal signed. */
export function createWorkerApp(opts: Partial<WorkerServices> = {}): Hono {
  const s: WorkerServices = {
    secret: DEV_WORKER_SECRET,
    workerId: undefined,
    maxBodyBytes: 8 * 1024 * 1024,
    metrics: workerMetrics(),
    startedAt: Date.now(),
    serving: () => undefined,
    jobs: () => undefined,
    notReady: () => 'no backbone configured (LADDER_BACKBONE_DIR)',
    ...opts,
  };
  const app = new Hono();

  app.get('/healthz', (c) =>
    c.json(
      HealthStatus.parse({
        service: 'gpu-worker',
        status: 'ok',
        version: LADDER_VERSION,
        uptime_s: (Date.now() - s.startedAt) / 1000,
      }),
    ),
  );
  app.get('/readyz', (c) => {
    const reason = s.notReady();
    return reason ? c.json({ ready: false, reason }, 503) : c.json({ ready: true });
  });
  app.get('/metrics', (c) =>
    c.text(s.metrics.registry.render(), 200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }),
  );

  app.use(
    '/internal/*',
    signedRequests({ secret: s.secret, workerId: s.workerId, maxBodyBytes: s.maxBodyBytes }),
  );
  const need =
    <T>(what: () => T | undefined): (() => T) =>
    () => {
      const v = what();
      if (v === undefined) {
        throw new HttpError(
          503,
          `worker not ready: ${s.notReady() ?? 'starting'}`,
          'not_ready',
          'server_error',
          {
            'Retry-After': '5',
          },
        );
      }
      return v;
    };
  servingRoutes(app, need(s.serving));
  jobRoutes(app, need(s.jobs), s.serving);

  app.notFound((c) =>
    c.json(apiError(`no route for ${c.req.method} ${c.req.path}`, 'invalid_request_error', 'not_found'), 404),
  );
  app.onError((err, c) => errorResponse(c, err));
  return app;
}
