import type { AdapterManifest, ModelObject } from '@ladder/schemas';

export interface AdapterRow {
  id: string;
  tenant_id: string;
  model_id: string;
  backbone: string;
  job_id: string;
  version: number;
  sha256: string;
  manifest: string;
  created_at: number;
  deleted_at: number | null;
}

/** The public model id of an adapter: `ft:<backbone>:<suffix>:<adapter id>`. */
export const adapterModelId = (backbone: string, suffix: string | null, adapterId: string) =>
  `ft:${backbone}:${suffix ?? 'adapter'}:${adapterId}`;

export const adapterModel = (r: AdapterRow): ModelObject => ({
  id: r.model_id,
  object: 'model',
  created: r.created_at,
  owned_by: r.tenant_id,
  backbone: r.backbone,
  kind: 'adapter',
});

export function findAdapter(env: Env, tenant: string, modelId: string): Promise<AdapterRow | null> {
  return env.DB.prepare('SELECT * FROM adapters WHERE tenant_id = ? AND model_id = ? AND deleted_at IS NULL')
    .bind(tenant, modelId)
    .first<AdapterRow>();
}

export async function listAdapters(env: Env, tenant: string): Promise<AdapterRow[]> {
  const { results } = await env.DB.prepare(
    'SELECT * FROM adapters WHERE tenant_id = ? AND deleted_at IS NULL ORDER BY created_at, id',
  )
    .bind(tenant)
    .all<AdapterRow>();
  return results;
}

export async function registerAdapter(
  env: Env,
  row: Omit<AdapterRow, 'manifest' | 'deleted_at'> & { manifest: AdapterManifest },
): Promise<void> {
  await env.DB.prepare(
    `INSERT OR IGNORE INTO adapters (id, tenant_id, model_id, backbone, job_id, version, sha256, manifest, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  )
    .bind(
      row.id,
      row.tenant_id,
      row.model_id,
      row.backbone,
      row.job_id,
      row.version,
      row.sha256,
      JSON.stringify(row.manifest),
      row.created_at,
    )
    .run();
}
