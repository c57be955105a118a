import { z } from 'zod';

/** What `/healthz` answers on both tiers: the edge and every GPU worker. */
export const HealthStatus = z.object({
  service: z.enum(['edge', 'gpu-worker']),
  status: z.enum(['ok', 'degraded']),
  version: z.string().min(1),
  /** Seconds since the process (or isolate) started. */
  uptime_s: z.number().nonnegative(),
});
export type HealthStatus = z.infer<typeof HealthStatus>;
