import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { type ApiErrorBody, call, json, newTenant } from './helpers/api.ts';
import { seedAdapter } from './helpers/seed.ts';
import { StandInWorker } from './helpers/stand-in-worker.ts';

describe('admin API', () => {
  it('creates tenants and keys, stores only key hashes, and revokes keys', async () => {
    const t = await newTenant('acme', { requests_per_min: 42 });
    expect(t.key).toMatch(/^sk-ladder-/);
    const stored = await env.DB.prepare('SELECT key_hash, prefix FROM api_keys WHERE id = ?')
      .bind(t.keyId)
      .first<{ key_hash: string; prefix: string }>();
    expect(stored!.key_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(stored)).not.toContain(t.key);
    expect((await call('/v1/models', { key: t.key })).status).toBe(200);

    const revoked = await json<{ revoked_at: number | null }>(
      await call(`/admin/v1/tenants/${t.id}/keys/${t.keyId}`, { key: env.ADMIN_TOKEN, method: 'DELETE' }),
    );
    expect(revoked.revoked_at).not.toBeNull();
    expect((await call('/v1/models', { key: t.key })).status).toBe(401);
  });

  it('refuses a wrong admin token, a tenant key, and an invalid body', async () => {
    const t = await newTenant();
    expect((await call('/admin/v1/tenants', { key: 'wrong', body: { name: 'x' } })).status).toBe(401);
    expect((await call('/admin/v1/tenants', { key: t.key, body: { name: 'x' } })).status).toBe(401);
    expect((await call('/admin/v1/tenants', { body: { name: 'x' } })).status).toBe(401);
    const bad = await json<ApiErrorBody>(
      await call('/admin/v1/tenants', { key: env.ADMIN_TOKEN, body: { name: '' } }),
      400,
    );
    expect(bad.error.param).toBe('name');
    const limits = await json<ApiErrorBody>(
      await call('/admin/v1/tenants', {
        key: env.ADMIN_TOKEN,
        body: { name: 'x', limits: { requests_per_min: -1 } },
      }),
      400,
    );
    expect(limits.error.param).toBe('limits.requests_per_min');
    expect(
      (await call('/admin/v1/tenants/tenant-nope/keys', { key: env.ADMIN_TOKEN, body: {} })).status,
    ).toBe(404);
    // a tenant's key cannot be revoked through another tenant
    const other = await newTenant('other');
    expect(
      (
        await call(`/admin/v1/tenants/${other.id}/keys/${t.keyId}`, {
          key: env.ADMIN_TOKEN,
          method: 'DELETE',
        })
      ).status,
    ).toBe(404);
  });
});

describe('models', () => {
  it("lists the served backbones and the tenant's adapters; deletes an adapter; other tenants see 404", async () => {
    const t = await newTenant('t');
    const other = await newTenant('other');
    const mine = await seedAdapter(t.id, 'adp-m1', 'mine');
    const theirs = await seedAdapter(other.id, 'adp-m2', 'theirs');
    const models = async () =>
      (await json<{ data: { id: string }[] }>(await call('/v1/models', { key: t.key }))).data.map(
        (m) => m.id,
      );
    // Every backbone in BACKBONES is configured, but only a live worker's is listed.
    expect(await models()).toEqual([mine]);
    expect((await new StandInWorker('models-a', 'ladder-tiny').heartbeat()).status).toBe(200);
    expect(await models()).toEqual(['ladder-tiny', mine]);
    expect((await call('/v1/models/ladder-tiny', { key: t.key })).status).toBe(200);
    expect((await call('/v1/models/qwen2.5-0.5b-q4', { key: t.key })).status).toBe(404);
    expect(await json(await call(`/v1/models/${mine}`, { key: t.key }))).toMatchObject({
      id: mine,
      kind: 'adapter',
      backbone: 'ladder-tiny',
    });
    expect((await call(`/v1/models/${theirs}`, { key: t.key })).status).toBe(404);
    expect((await call(`/v1/models/${theirs}`, { key: t.key, method: 'DELETE' })).status).toBe(404);
    expect(
      (await json<ApiErrorBody>(await call('/v1/models/ladder-tiny', { key: t.key, method: 'DELETE' }), 400))
        .error.code,
    ).toBe('model_not_deletable');
    expect(await json(await call(`/v1/models/${mine}`, { key: t.key, method: 'DELETE' }))).toMatchObject({
      id: mine,
      deleted: true,
    });
    expect((await call(`/v1/models/${mine}`, { key: t.key })).status).toBe(404);
    expect((await call('/v1/models')).status).toBe(401);
    expect((await call(`/v1/models/${theirs}`, { key: other.key })).status).toBe(200);
  });
});

describe('OpenAPI document', () => {
  it('serves /openapi.json with every public route', async () => {
    const doc = await json<{ openapi: string; paths: Record<string, unknown> }>(await call('/openapi.json'));
    expect(doc.openapi).toBe('3.1.0');
    for (const path of [
      '/v1/files',
      '/v1/files/{file_id}',
      '/v1/fine_tuning/jobs',
      '/v1/fine_tuning/jobs/{job_id}/events',
      '/v1/fine_tuning/jobs/{job_id}/checkpoints',
      '/v1/fine_tuning/jobs/{job_id}/pause',
      '/v1/fine_tuning/jobs/{job_id}/resume',
      '/v1/files/{file_id}/content',
      '/v1/models',
      '/v1/models/{model}',
      '/v1/chat/completions',
      '/v1/completions',
      '/v1/usage',
      '/admin/v1/tenants',
      '/internal/v1/workers/heartbeat',
    ]) {
      expect(doc.paths, path).toHaveProperty([path]);
    }
  });

  it('says that prompts and message contents are text, special tokens included', async () => {
    type Doc = { paths: Record<string, { post: { description: string } }> };
    const doc = await json<Doc>(await call('/openapi.json'));
    expect(doc.paths['/v1/completions']!.post.description).toMatch(/prompt is text.*not control tokens/);
    expect(doc.paths['/v1/chat/completions']!.post.description).toMatch(
      /content is text.*never as the control token/,
    );
  });
});
