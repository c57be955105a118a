import { createEdgeApp } from './src/app.ts';

const app = createEdgeApp();

export default { fetch: app.fetch } satisfies ExportedHandler<Env>;
