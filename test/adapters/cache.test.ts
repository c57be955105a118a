import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdapterCache,
  type AdapterLoader,
  type AdapterRef,
  FsAdapterStore,
  typedArrayLoader,
  type VerifiedAdapter,
  weightsKey,
} from '../../adapters/index.ts';
import { adapterInput, BACKBONE } from '../helpers/adapter-fixtures.ts';

/** A loader whose value is the adapter itself, sized by its weights, recording disposals. */
function recordingLoader(): AdapterLoader<VerifiedAdapter> & { disposed: string[] } {
  const disposed: string[] = [];
  return {
    disposed,
    load: (a) => ({ value: a, bytes: a.weights.byteLength }),
    dispose: (v) => {
      disposed.push(`${v.manifest.adapter_id}/v${v.manifest.version}`);
    },
  };
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('AdapterCache over a real filesystem store', () => {
  let dataDir: string;
  let store: FsAdapterStore;
  let size: number;
  const ref = (adapterId: string, version = 1): AdapterRef => ({ tenant: 'acme', adapterId, version });

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'ladder-cache-'));
    store = new FsAdapterStore({ dataDir, tenant: 'acme', backboneFingerprint: BACKBONE.fingerprint });
    for (let i = 0; i < 10; i++)
      size = (await store.put(adapterInput(`a${i}`, 1, { seed: i }))).weights.size_bytes;
  });
  afterAll(() => rm(dataDir, { recursive: true, force: true }));

  const counting = () => {
    const calls: string[] = [];
    const source = (r: AdapterRef) => {
      calls.push(r.adapterId);
      return store.forTenant(r.tenant).get(r.adapterId, r.version);
    };
    return { calls, source };
  };

  it('stays within its byte budget and evicts the least recently used', async () => {
    const { calls, source } = counting();
    const loader = recordingLoader();
    const cache = new AdapterCache({ budgetBytes: 3 * size + 100, source, loader });
    for (let i = 0; i < 10; i++) {
      await cache.use(ref(`a${i}`), () => {});
      await cache.use(ref('a0'), () => {}); // keep a0 hot
      expect(cache.stats().bytes).toBeLessThanOrEqual(3 * size + 100);
    }
    expect(cache.has(ref('a0'))).toBe(true);
    expect(cache.has(ref('a9'))).toBe(true);
    expect(cache.has(ref('a1'))).toBe(false);
    const s = cache.stats();
    expect(s).toMatchObject({ entries: 3, bytes: 3 * size, pinned: 0, misses: 10, loads: 10, hits: 10 });
    expect(s.evictions).toBe(7);
    await Promise.resolve();
    expect(loader.disposed).toHaveLength(7);
    expect(loader.disposed).not.toContain('a0/v1');
    expect(calls.filter((c) => c === 'a0')).toHaveLength(1);
  });

  it('never evicts a pinned adapter; refuses a new one when pins fill the budget', async () => {
    const { source } = counting();
    const cache = new AdapterCache({ budgetBytes: 2 * size, source, loader: recordingLoader() });
    const held = await cache.acquire(ref('a0'));
    const held2 = await cache.acquire(ref('a1'));
    await expect(cache.acquire(ref('a2'))).rejects.toMatchObject({ code: 'cache_full' });
    expect(cache.stats()).toMatchObject({ pinned: 2, entries: 2, evictions: 0 });
    held2.release();
    held2.release(); // idempotent
    await cache.use(ref('a2'), (v) => expect(v.manifest.adapter_id).toBe('a2'));
    expect(cache.has(ref('a0'))).toBe(true);
    expect(cache.has(ref('a1'))).toBe(false);
    expect(held.value.manifest.adapter_id).toBe('a0');
    held.release();
    expect(cache.stats().pinned).toBe(0);
  });

  it('loads a cold adapter once for many concurrent requests (single-flight)', async () => {
    const { calls, source } = counting();
    const gate = deferred();
    const cache = new AdapterCache({
      budgetBytes: 10 * size,
      source: async (r) => {
        await gate.promise; // hold the fetch until every request has asked
        return source(r);
      },
      loader: typedArrayLoader,
    });
    const leases = Array.from({ length: 25 }, () => cache.acquire(ref('a3')));
    expect(cache.stats()).toMatchObject({ misses: 25, loads: 1 });
    gate.resolve();
    const got = await Promise.all(leases);
    expect(calls).toEqual(['a3']);
    expect(new Set(got.map((l) => l.value)).size).toBe(1);
    expect(cache.stats().pinned).toBe(1);
    for (const l of got) l.release();
    expect(cache.stats()).toMatchObject({ pinned: 0, entries: 1, loads: 1 });
    // The ready value is typed arrays with the stored values.
    const input = adapterInput('a3', 1, { seed: 3 }).weights as Record<string, { data: Float32Array }>;
    const up = got[0]!.value.get('side.layers.0.down.weight')!;
    expect(up.data).toBeInstanceOf(Float32Array);
    expect(Array.from(up.data.slice(0, 4) as Float32Array)).toEqual(
      Array.from(input['side.layers.0.down.weight']!.data.slice(0, 4)),
    );
  });

  it('shares one failure among the waiters and remembers a missing adapter briefly', async () => {
    const { calls, source } = counting();
    let now = 0;
    const cache = new AdapterCache({
      budgetBytes: size * 4,
      source,
      loader: recordingLoader(),
      now: () => now,
    });
    const all = await Promise.allSettled([cache.acquire(ref('ghost')), cache.acquire(ref('ghost'))]);
    expect(all.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(calls).toEqual(['ghost']);
    await expect(cache.acquire(ref('ghost'))).rejects.toMatchObject({ code: 'not_found' });
    expect(calls).toEqual(['ghost']);
    expect(cache.stats().negativeHits).toBe(1);
    now += 5_001;
    await expect(cache.acquire(ref('ghost'))).rejects.toMatchObject({ code: 'not_found' });
    expect(calls).toEqual(['ghost', 'ghost']);
  });

  it('does not cache an integrity failure: the next request fetches again', async () => {
    const tenant = store.forTenant('corrupt');
    const m = await tenant.put(adapterInput('bad', 1));
    const key = weightsKey('corrupt', 'bad', 1, m.weights.sha256);
    const good = (await tenant.blobs.get(key))!;
    const flipped = new Uint8Array(good);
    flipped[flipped.length - 1]! ^= 0xff;
    await tenant.blobs.put(key, flipped);
    const { calls, source } = counting();
    const cache = new AdapterCache({ budgetBytes: size * 4, source, loader: recordingLoader() });
    const r = { tenant: 'corrupt', adapterId: 'bad', version: 1 };
    await expect(cache.acquire(r)).rejects.toMatchObject({ code: 'integrity' });
    await tenant.blobs.put(key, good);
    expect((await cache.acquire(r)).value.manifest.adapter_id).toBe('bad');
    expect(calls).toHaveLength(2);
    expect(cache.stats()).toMatchObject({ loadFailures: 1, entries: 1 });
  });

  it('frees an invalidated adapter only once its last request releases it', async () => {
    const { source } = counting();
    const loader = recordingLoader();
    const cache = new AdapterCache({ budgetBytes: size * 4, source, loader });
    const lease = await cache.acquire(ref('a5'));
    cache.invalidate(ref('a5'));
    expect(cache.has(ref('a5'))).toBe(false);
    expect(cache.stats()).toMatchObject({ bytes: size, pinned: 1 });
    await Promise.resolve();
    expect(loader.disposed).toEqual([]);
    lease.release();
    await new Promise((r) => setTimeout(r, 0));
    expect(loader.disposed).toEqual(['a5/v1']);
    expect(cache.stats()).toMatchObject({ bytes: 0, pinned: 0 });
  });

  it('refuses an adapter larger than the whole budget and frees what the loader made', async () => {
    const { source } = counting();
    const loader = recordingLoader();
    const cache = new AdapterCache({ budgetBytes: size - 1, source, loader });
    await expect(cache.acquire(ref('a1'))).rejects.toThrow(/needs \d+ bytes; the budget is/);
    await new Promise((r) => setTimeout(r, 0));
    expect(loader.disposed).toEqual(['a1/v1']);
    expect(cache.stats().bytes).toBe(0);
  });

  it('validates refs like the store does', async () => {
    const cache = new AdapterCache({ budgetBytes: 1, source: counting().source, loader: recordingLoader() });
    await expect(cache.acquire({ tenant: '../x', adapterId: 'a', version: 1 })).rejects.toMatchObject({
      code: 'invalid_argument',
    });
  });
});
