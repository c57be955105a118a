import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { S3AdapterStore, type S3AdapterStoreOptions, weightsKey } from '../../adapters/index.ts';
import { adapterInput, BACKBONE, type SideNetShape } from '../helpers/adapter-fixtures.ts';
import { ALL_FAULTS, type Fault, FaultProxy } from '../helpers/fault-proxy.ts';
import { type LocalS3, startLocalS3 } from '../helpers/s3-server.ts';

const enc = (s: string) => new TextEncoder().encode(s);

describe('S3AdapterStore through a faulty network (TCP proxy in front of fauxqs)', () => {
  let s3: LocalS3;
  let proxy: FaultProxy;
  const stores: S3AdapterStore[] = [];
  const open = (tenant: string, extra: Partial<S3AdapterStoreOptions> = {}) => {
    const store = new S3AdapterStore({
      ...s3.storeOptions(),
      endpoint: proxy.endpoint,
      tenant,
      backboneFingerprint: BACKBONE.fingerprint,
      maxAttempts: 10,
      baseDelayMs: 5,
      maxDelayMs: 40,
      // Short, so a stalled request is given up and retried quickly.
      attemptTimeoutMs: 750,
      ...extra,
    });
    stores.push(store);
    return store;
  };

  beforeAll(async () => {
    s3 = await startLocalS3();
    proxy = await new FaultProxy({ targetPort: s3.port, rate: 0, faults: ALL_FAULTS, seed: 42 }).listen();
  });
  beforeEach(() => {
    proxy.set({ rate: 0, rule: undefined, faults: ALL_FAULTS });
  });
  afterAll(async () => {
    for (const s of stores) s.blobs.destroy();
    await proxy.close();
    await s3.stop();
  });

  it.each(ALL_FAULTS)('retries a %s on the manifest write and on the weights read', async (fault: Fault) => {
    const store = open(`one-${fault}`);
    const armed = { put: true, get: true };
    proxy.set({
      rule: (line) => {
        if (armed.put && line.startsWith('PUT') && line.includes('/manifest.json')) {
          armed.put = false;
          return fault;
        }
        if (armed.get && line.startsWith('GET') && line.includes('/weights/')) {
          armed.get = false;
          return fault;
        }
        return undefined;
      },
    });
    const m = await store.put(adapterInput('a', 1));
    const got = await store.get('a', 1);
    expect(armed).toEqual({ put: false, get: false });
    expect(got.manifest.weights.sha256).toBe(m.weights.sha256);
    expect(store.blobs.retries).toBeGreaterThanOrEqual(2);
  });

  it('publishes, lists and reads everything intact while 30% of requests fail or stall', async () => {
    proxy.set({ rate: 0.3 });
    const before = proxy.stats.faulted;
    const store = open('flaky');
    const published = [];
    for (let i = 0; i < 6; i++) published.push(await store.put(adapterInput(`a${i}`, 1, { seed: i })));
    await store.checkpoints.put('job', { step: 1, data: enc('optimizer state') });
    await store.datasets.put('train.jsonl', enc('{"text":"x"}\n'));
    const listed = await store.list();
    expect(listed.items.map((m) => m.adapter_id)).toEqual(['a0', 'a1', 'a2', 'a3', 'a4', 'a5']);
    for (const m of published) {
      expect((await store.get(m.adapter_id, 1)).manifest.weights.sha256).toBe(m.weights.sha256);
    }
    expect(new TextDecoder().decode((await store.checkpoints.latest('job'))!.data)).toBe('optimizer state');
    expect(new TextDecoder().decode(await store.datasets.get('train.jsonl'))).toBe('{"text":"x"}\n');
    expect(proxy.stats.faulted - before).toBeGreaterThan(5);
    expect(store.blobs.retries).toBeGreaterThan(5);
  });

  it('retries single multipart parts and a Complete whose answer was lost', async () => {
    const shape: SideNetShape = { d: 512, dff: 2048, layers: 3, r: 2, dtype: 'F32' }; // ~15 MB
    const store = open('multipart', {
      multipartThresholdBytes: 6 * 1024 * 1024,
      partSizeBytes: 5 * 1024 * 1024,
      attemptTimeoutMs: 10_000, // 5 MiB parts on a busy 2-core machine
    });
    const hit = { part: false, complete: false };
    const firstLine = proxy.stats.lines.length;
    proxy.set({
      rule: (line) => {
        if (!hit.part && line.startsWith('PUT') && line.includes('partNumber=2')) {
          hit.part = true;
          return 'reset-after-request';
        }
        if (!hit.complete && line.startsWith('POST') && line.includes('uploadId=')) {
          hit.complete = true;
          return 'reset-after-request';
        }
        return undefined;
      },
    });
    const m = await store.put(adapterInput('big', 1, { shape }));
    expect(hit).toEqual({ part: true, complete: true });
    const lines = proxy.stats.lines.slice(firstLine);
    expect(lines.filter((l) => l.includes('uploads')).length).toBe(1); // one upload, not restarted
    expect(
      new Set(lines.filter((l) => l.includes('partNumber=')).map((l) => /partNumber=(\d+)/.exec(l)![1])),
    ).toEqual(new Set(['1', '2', '3']));
    expect((await store.get('big', 1)).manifest.weights.sha256).toBe(m.weights.sha256);
  });

  it('makes nothing visible when a publish fails for good, and the retry later succeeds', async () => {
    const store = open('doomed', { maxAttempts: 3 });
    proxy.set({
      rule: (line) => (line.startsWith('PUT') && line.includes('/manifest.json') ? 'http-503' : undefined),
    });
    const input = adapterInput('d', 1);
    await expect(store.put(input)).rejects.toMatchObject({ code: 'unavailable' });
    proxy.set({ rule: undefined });
    // The weights landed (content-addressed, unreferenced); the version does not exist.
    const sha = (await open('probe-d').put(input)).weights.sha256;
    expect(await store.blobs.get(weightsKey('doomed', 'd', 1, sha))).toBeDefined();
    await expect(store.get('d', 1)).rejects.toMatchObject({ code: 'not_found' });
    expect((await store.list()).items).toEqual([]);
    await store.put(input);
    expect((await store.list()).items.map((m) => m.adapter_id)).toEqual(['d']);
  });

  it('never returns a truncated read as an adapter, however often it happens', async () => {
    const store = open('cut', { maxAttempts: 3 });
    await store.put(adapterInput('c', 1));
    proxy.set({
      rule: (line) =>
        line.startsWith('GET') && line.includes('/weights/') ? 'truncate-response' : undefined,
    });
    await expect(store.get('c', 1)).rejects.toMatchObject({ code: 'unavailable' });
    proxy.set({ rule: undefined });
    expect((await store.get('c', 1)).manifest.adapter_id).toBe('c');
  });
});
