export { loadWorkerConfig, WorkerConfig } from './src/config.ts';
export { createWorkerApp } from './src/server/app.ts';
export { type RunningWorker, startWorker } from './src/server/serve.ts';
