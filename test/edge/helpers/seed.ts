import { env } from 'cloudflare:workers';

/** Registers an adapter row directly (the job flow that normally does it is tested in jobs.test.ts). */
export async function seedAdapter(tenant: string, adapterId: string, suffix = 'seed'): Promise<string> {
  const modelId = `ft:ladder-tiny:${suffix}:${adapterId}`;
  await env.DB.prepare(
    `INSERT INTO adapters (id, tenant_id, model_id, backbone, job_id, version, sha256, manifest, created_at)
     VALUES (?, ?, ?, 'ladder-tiny', 'ftjob-seed', 1, ?, '{}', 0)`,
  )
    .bind(adapterId, tenant, modelId, 'c'.repeat(64))
    .run();
  return modelId;
}
