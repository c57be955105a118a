import { type ServerType, serve } from '@hono/node-server';
import type { WorkerConfig } from '../config.ts';
import { createWorkerApp } from './app.ts';

export interface RunningWorker {
  url: string;
  close(): Promise<void>;
}

/** Listen on the configured host and port (port 0 picks a free one) and resolve once bound. */
export function startWorker(
  config: Pick<WorkerConfig, 'LADDER_WORKER_HOST' | 'LADDER_WORKER_PORT'>,
): Promise<RunningWorker> {
  const app = createWorkerApp();
  return new Promise((resolve, reject) => {
    let server: ServerType;
    try {
      server = serve(
        { fetch: app.fetch, hostname: config.LADDER_WORKER_HOST, port: config.LADDER_WORKER_PORT },
        (info) => {
          resolve({
            url: `http://${config.LADDER_WORKER_HOST}:${info.port}`,
            close: () => new Promise<void>((done, fail) => server.close((err) => (err ? fail(err) : done()))),
          });
        },
      );
      server.once('error', reject);
    } catch (err) {
      reject(err);
    }
  });
}
