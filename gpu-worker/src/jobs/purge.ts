import { createHash } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { AdapterStore } from '@ladder/adapters';

/** The name of a job's cached training (or validation) file in the tenant's dataset store. */
export function jobDatasetName(jobId: string, kind: 'train' | 'validation'): string {
  return `job-${createHash('sha256').update(jobId).digest('hex').slice(0, 24)}.${kind}.jsonl`;
}

/** Where a job's activation cache lives on this worker's disk. */
export const activationDir = (dataDir: string, jobId: string) => join(dataDir, 'activations', jobId);

export interface PurgeWhat {
  /** The job's checkpoints (params and optimizer state) in the store. */
  checkpoints: boolean;
  /** An adapter to delete, every version. */
  adapterId?: string | undefined;
}

export interface PurgeReport {
  adapterVersions: number;
  checkpoints: boolean;
  datasets: boolean;
}

/**
 * Deletes what a worker keeps of one job: always its cached training files and its activation
 * cache; on request its checkpoints and its adapter. Every delete is idempotent, so a repeat (the
 * edge's retry, the startup sweep) is harmless.
 */
export async function purgeJobData(
  store: AdapterStore,
  dataDir: string,
  jobId: string,
  what: PurgeWhat,
): Promise<PurgeReport> {
  await store.datasets.delete(jobDatasetName(jobId, 'train'));
  await store.datasets.delete(jobDatasetName(jobId, 'validation'));
  rmSync(activationDir(dataDir, jobId), { recursive: true, force: true });
  if (what.checkpoints) await store.checkpoints.delete(jobId);
  const adapterVersions = what.adapterId === undefined ? 0 : await store.delete(what.adapterId);
  return { adapterVersions, checkpoints: what.checkpoints, datasets: true };
}

/** Staged taps a killed process left behind (`taps/ladder-taps-*`); call before any job runs. */
export function sweepStagedTaps(dataDir: string): void {
  const dir = join(dataDir, 'taps');
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names)
    if (n.startsWith('ladder-taps-')) rmSync(join(dir, n), { recursive: true, force: true });
}
