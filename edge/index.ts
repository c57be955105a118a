import { createEdgeApp } from './src/app.ts';
import { queue } from './src/queue.ts';

export { TenantMeter } from './src/durable-objects/tenant-meter.ts';
export { WorkerRegistry } from './src/durable-objects/worker-registry.ts';

const app = createEdgeApp();

export default { fetch: app.fetch, queue } satisfies ExportedHandler<Env>;
