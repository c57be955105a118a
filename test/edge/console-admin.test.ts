import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { call, json, newTenant } from './helpers/api.ts';
import { StandInWorker } from './helpers/stand-in-worker.ts';

const admin = { key: env.ADMIN_TOKEN };

describe('admin views for the console', () => {
  it('lists tenants, and keys with revoked ones but never a secret', async () => {
    const a = await newTenant('console-a');
    const b = await newTenant('console-b');
    const tenants = await json<{ data: { id: string; name: string; limits: Record<string, number> }[] }>(
      await call('/admin/v1/tenants', admin),
    );
    const mine = tenants.data.filter((t) => t.id === a.id || t.id === b.id);
    expect(mine.map((t) => t.name)).toEqual(['console-a', 'console-b']);
    expect(mine[0]!.limits.requests_per_min).toBeGreaterThan(0);

    await json(await call(`/admin/v1/tenants/${a.id}/keys/${a.keyId}`, { ...admin, method: 'DELETE' }));
    const second = await json<{ id: string }>(
      await call(`/admin/v1/tenants/${a.id}/keys`, { ...admin, body: { name: 'second' } }),
      201,
    );
    const keys = await json<{ data: Record<string, unknown>[] }>(
      await call(`/admin/v1/tenants/${a.id}/keys`, admin),
    );
    expect(keys.data.map((k) => k.id)).toEqual([a.keyId, second.id]);
    expect(keys.data[0]!.revoked_at).not.toBeNull();
    expect(keys.data[1]!.revoked_at).toBeNull();
    expect(keys.data.every((k) => !('key' in k))).toBe(true);
    expect(JSON.stringify(keys)).not.toContain(a.key);
    expect((await call('/admin/v1/tenants/tenant-nope/keys', admin)).status).toBe(404);
  });

  it("lists the registry's workers with capacity, loaded adapters and heartbeat age", async () => {
    const w = new StandInWorker('console-w1', 'ladder-tiny');
    expect((await w.heartbeat(['adp-one', 'adp-two'])).status).toBe(200);
    const workers = await json<{ data: Record<string, unknown>[] }>(await call('/admin/v1/workers', admin));
    const row = workers.data.find((x) => x.worker_id === 'console-w1');
    expect(row).toMatchObject({
      backbone: 'ladder-tiny',
      max_queue: 8,
      queue_depth: 0,
      running_jobs: 0,
      loaded_adapters: ['adp-one', 'adp-two'],
    });
    expect(row!.heartbeat_age_s).toBeGreaterThanOrEqual(0);
    expect(row!.heartbeat_age_s).toBeLessThan(Number(env.HEARTBEAT_TTL_S));
  });

  it('needs the admin token: a tenant key is refused', async () => {
    const t = await newTenant();
    for (const path of ['/admin/v1/tenants', '/admin/v1/workers', `/admin/v1/tenants/${t.id}/keys`]) {
      expect((await call(path, { key: t.key })).status).toBe(401);
      expect((await call(path)).status).toBe(401);
    }
  });
});

describe('console support', () => {
  it("gives a tenant the price table that /v1/usage's costs come from", async () => {
    const t = await newTenant();
    const prices = await json<{ data: Record<string, { prompt_per_1k: number }> }>(
      await call('/v1/usage/prices', { key: t.key }),
    );
    const table = env.PRICE_TABLE as unknown as Record<string, { prompt_per_1k: number }>;
    expect(prices.data['qwen2.5-0.5b-q4']!.prompt_per_1k).toBe(table['qwen2.5-0.5b-q4']!.prompt_per_1k);
    expect(prices.data['ladder-tiny']!.prompt_per_1k).toBe(table['*']!.prompt_per_1k);
    expect((await call('/v1/usage/prices')).status).toBe(401);
  });
});
