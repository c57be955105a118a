import { loadWorkerConfig } from './config.ts';
import { startWorker } from './server/serve.ts';

const worker = await startWorker(loadWorkerConfig());
console.log(`gpu-worker listening on ${worker.url}`);
worker.ready.then(
  () => console.log('gpu-worker ready'),
  () => process.exit(1),
);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void worker.close().then(() => process.exit(0)));
}
