import { describeIssues, SafeId, SafeName } from '@ladder/schemas';
import { z } from 'zod';
import { InvalidArgumentError } from './errors.ts';

/**
 * Every object of a tenant lives under `tenants/{tenant}/`. Each key segment that comes from a
 * caller goes through `checkId`/`checkName` (ASCII-only alphabets, no `/`, no `..`), so no key
 * built here can escape that prefix. The layout:
 *
 *   tenants/{tenant}/adapters/{adapterId}/v{version}/manifest.json
 *   tenants/{tenant}/adapters/{adapterId}/v{version}/weights/{sha256}.safetensors
 *   tenants/{tenant}/checkpoints/{jobId}/step-{step:012}.bin | step-{step:012}.json | latest.json
 *   tenants/{tenant}/datasets/{name}
 */
export { SafeId, SafeName };

export const AdapterVersion = z.number().int().positive().max(1_000_000);
const Step = z.number().int().min(0).max(1e12);
const Sha = z.string().regex(/^[0-9a-f]{64}$/);

function check<T>(schema: z.ZodType<T>, field: string, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    throw new InvalidArgumentError(
      `${field} ${JSON.stringify(value)} is invalid: ${describeIssues(r.error)}`,
    );
  }
  return r.data;
}

export const checkId = (field: string, value: unknown): string => check(SafeId, field, value);
export const checkName = (field: string, value: unknown): string => check(SafeName, field, value);
export const checkVersion = (value: unknown): number => check(AdapterVersion, 'adapter version', value);

export function tenantPrefix(tenant: string): string {
  return `tenants/${checkId('tenant', tenant)}/`;
}

export function adaptersPrefix(tenant: string): string {
  return `${tenantPrefix(tenant)}adapters/`;
}

export function adapterPrefix(tenant: string, adapterId: string): string {
  return `${adaptersPrefix(tenant)}${checkId('adapter id', adapterId)}/`;
}

export function adapterKey(tenant: string, adapterId: string, version: number): string {
  return `${adapterPrefix(tenant, adapterId)}v${checkVersion(version)}/`;
}

export function manifestKey(tenant: string, adapterId: string, version: number): string {
  return `${adapterKey(tenant, adapterId, version)}manifest.json`;
}

export function weightsKey(tenant: string, adapterId: string, version: number, sha256: string): string {
  return `${adapterKey(tenant, adapterId, version)}weights/${check(Sha, 'weights sha256', sha256)}.safetensors`;
}

/** `{adapterId}/v{version}/manifest.json` relative to `adaptersPrefix`, or undefined for other keys. */
export function parseManifestKey(relative: string): { adapterId: string; version: number } | undefined {
  const m = /^([A-Za-z0-9][A-Za-z0-9_-]{0,127})\/v([1-9][0-9]{0,6})\/manifest\.json$/.exec(relative);
  if (!m) return undefined;
  const version = Number(m[2]);
  return AdapterVersion.safeParse(version).success ? { adapterId: m[1]!, version } : undefined;
}

export function checkpointPrefix(tenant: string, jobId: string): string {
  return `${tenantPrefix(tenant)}checkpoints/${checkId('job id', jobId)}/`;
}

/** Zero-padded so that key order is step order (listing relies on it). */
export function checkpointStem(tenant: string, jobId: string, step: number): string {
  return `${checkpointPrefix(tenant, jobId)}step-${String(check(Step, 'checkpoint step', step)).padStart(12, '0')}`;
}

export function parseCheckpointRecordKey(relative: string): number | undefined {
  const m = /^step-([0-9]{12})\.json$/.exec(relative);
  return m ? Number(m[1]) : undefined;
}

export function datasetsPrefix(tenant: string): string {
  return `${tenantPrefix(tenant)}datasets/`;
}

export function datasetKey(tenant: string, name: string): string {
  return `${datasetsPrefix(tenant)}${checkName('dataset name', name)}`;
}
