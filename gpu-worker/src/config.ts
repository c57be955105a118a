import { describeIssues } from '@ladder/schemas';
import { z } from 'zod';

/** Worker configuration, read from the environment; every default runs on a laptop CPU. */
export const WorkerConfig = z.object({
  LADDER_WORKER_HOST: z.string().default('127.0.0.1'),
  LADDER_WORKER_PORT: z.coerce.number().int().min(0).max(65535).default(8788),
  LADDER_EXECUTION_PROVIDER: z.enum(['cpu', 'cuda', 'webgpu']).default('cpu'),
});
export type WorkerConfig = z.infer<typeof WorkerConfig>;

export function loadWorkerConfig(env: Record<string, string | undefined> = process.env): WorkerConfig {
  const parsed = WorkerConfig.safeParse(env);
  if (!parsed.success) throw new Error(`invalid gpu-worker configuration: ${describeIssues(parsed.error)}`);
  return parsed.data;
}
