export { DEV_WORKER_SECRET, loadWorkerConfig, WorkerConfig } from './src/config.ts';
export { JobRecordStore, JobRefusedError, JobRunner, type JobView } from './src/jobs/index.ts';
export { createWorkerApp, type WorkerServices } from './src/server/app.ts';
export { type RunningWorker, startWorker } from './src/server/serve.ts';
export { signedRequests } from './src/server/signature.ts';
export {
  ComputeGate,
  type GenerationJob,
  type GenerationOutcome,
  openServing,
  Scheduler,
  type Serving,
  ServingModel,
  workerMetrics,
} from './src/serving/index.ts';
