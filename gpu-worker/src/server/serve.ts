import { join } from 'node:path';
import { type ServerType, serve } from '@hono/node-server';
import {
  refuseDevSecretBeyondLoopback,
  type WorkerConfig,
  WorkerConfig as WorkerConfigSchema,
} from '../config.ts';
import { JobRecordStore, JobRunner } from '../jobs/index.ts';
import { ComputeGate, openServing, type Serving, workerMetrics } from '../serving/index.ts';
import { createWorkerApp } from './app.ts';
import { startHeartbeats } from './heartbeat.ts';

export interface RunningWorker {
  url: string;
  /** Resolves when the backbone is open and jobs are resumed (rejects if it cannot be opened). */
  ready: Promise<void>;
  serving(): Serving | undefined;
  jobs(): JobRunner | undefined;
  close(): Promise<void>;
}

/**
 * Listens at once (health answers while the backbone builds), then opens the serving stack,
 * resumes unfinished training jobs and starts heartbeats. Port 0 picks a free port.
 */
export async function startWorker(input: Partial<WorkerConfig> = {}): Promise<RunningWorker> {
  const config: WorkerConfig = { ...WorkerConfigSchema.parse({}), ...input };
  refuseDevSecretBeyondLoopback(config);
  const metrics = workerMetrics();
  const gate = new ComputeGate();
  let serving: Serving | undefined;
  let jobs: JobRunner | undefined;
  let failure: string | undefined;
  let stopBeats: (() => void) | undefined;
  const r = metrics.registry;
  r.collect(
    'ladder_process_resident_bytes',
    'Resident set size of the worker process',
    'gauge',
    () => process.memoryUsage().rss,
  );
  r.collect('ladder_process_heap_bytes', 'V8 heap in use', 'gauge', () => process.memoryUsage().heapUsed);
  r.collect(
    'ladder_training_jobs_running',
    'Training jobs running now',
    'gauge',
    () => jobs?.runningJobs ?? 0,
  );

  const app = createWorkerApp({
    secret: config.LADDER_WORKER_SECRET,
    workerId: config.LADDER_WORKER_ID,
    maxBodyBytes: config.LADDER_MAX_REQUEST_BYTES,
    metrics,
    serving: () => serving,
    jobs: () => jobs,
    notReady: () =>
      failure ??
      (!config.LADDER_BACKBONE_DIR
        ? 'no backbone configured (LADDER_BACKBONE_DIR)'
        : serving && jobs
          ? undefined
          : 'opening the backbone'),
  });
  const server = await new Promise<{ server: ServerType; port: number }>((resolve, reject) => {
    try {
      const s = serve(
        { fetch: app.fetch, hostname: config.LADDER_WORKER_HOST, port: config.LADDER_WORKER_PORT },
        (info) => resolve({ server: s, port: info.port }),
      );
      s.once('error', reject);
    } catch (err) {
      reject(err);
    }
  });
  const url = config.LADDER_WORKER_URL ?? `http://${config.LADDER_WORKER_HOST}:${server.port}`;

  const ready = (async () => {
    if (!config.LADDER_BACKBONE_DIR) return;
    try {
      serving = await openServing(config, metrics, gate);
      jobs = new JobRunner(
        config,
        serving.model,
        serving.store,
        new JobRecordStore(join(config.LADDER_DATA_DIR, 'jobs')),
        gate,
        metrics,
      );
      jobs.resumeAll();
    } catch (e) {
      failure = `cannot open the backbone: ${(e as Error).message}`;
      throw e;
    }
    if (config.LADDER_EDGE_URL) {
      const s = serving;
      stopBeats = startHeartbeats({
        edgeUrl: config.LADDER_EDGE_URL,
        secret: config.LADDER_WORKER_SECRET,
        intervalMs: config.LADDER_HEARTBEAT_MS,
        beat: () => ({
          worker_id: config.LADDER_WORKER_ID,
          url,
          backbone: { name: s.model.name, fingerprint: s.model.fingerprint },
          capacity: {
            queue_depth: s.scheduler.queueDepth,
            max_queue: config.LADDER_MAX_QUEUE,
            running_jobs: jobs?.runningJobs ?? 0,
          },
          loaded_adapters: s.loadedAdapters(),
        }),
      });
    }
  })();
  ready.catch((e) => console.error(`gpu-worker: ${(e as Error).message}`));

  return {
    url,
    ready,
    serving: () => serving,
    jobs: () => jobs,
    close: async () => {
      stopBeats?.();
      await ready.catch(() => undefined);
      await jobs?.stop();
      await serving?.scheduler.close();
      await new Promise<void>((done, fail) => server.server.close((err) => (err ? fail(err) : done())));
      await serving?.model.dispose();
    },
  };
}
