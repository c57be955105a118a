import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  resolveS3Options,
  S3AdapterStore,
  S3BlobStore,
  s3OptionsFromEnv,
  weightsKey,
} from '../../adapters/index.ts';
import { adapterInput, BACKBONE, type SideNetShape } from '../helpers/adapter-fixtures.ts';
import { adapterStoreContract } from '../helpers/adapter-store-contract.ts';
import { ConditionalWriteProxy } from '../helpers/conditional-proxy.ts';
import { type LocalS3, startLocalS3 } from '../helpers/s3-server.ts';

adapterStoreContract('S3, read-back create-only (fauxqs on 127.0.0.1)', async () => {
  const s3 = await startLocalS3();
  const blobs = new S3BlobStore({ ...s3.storeOptions(), prefix: 'contract/' });
  return {
    blobs,
    open: (tenant, opts) =>
      new S3AdapterStore({
        ...s3.storeOptions(),
        prefix: 'contract/',
        client: blobs.client,
        tenant,
        ...opts,
      }),
    close: async () => {
      blobs.destroy();
      await s3.stop();
    },
  };
});

// The same contract where the server enforces If-None-Match: * (as AWS S3, R2 and MinIO do).
adapterStoreContract('S3, If-None-Match create-only (fauxqs behind an enforcing proxy)', async () => {
  const s3 = await startLocalS3();
  const shim = await new ConditionalWriteProxy(s3.port).listen();
  const options = { ...s3.storeOptions(), endpoint: shim.endpoint, prefix: 'contract-inm/' };
  const blobs = new S3BlobStore(options);
  expect(await blobs.conditionalWritesHonoured()).toBe(true);
  return {
    blobs,
    open: (tenant, opts) => new S3AdapterStore({ ...options, client: blobs.client, tenant, ...opts }),
    close: async () => {
      blobs.destroy();
      await shim.close();
      await s3.stop();
    },
  };
});

describe('S3AdapterStore specifics', () => {
  let s3: LocalS3;
  beforeAll(async () => {
    s3 = await startLocalS3();
  });
  afterAll(() => s3.stop());

  it('uploads large weights as multipart and reads them back verified', async () => {
    // ~15 MB of F32: three parts of 5 MiB (S3's minimum part size). fauxqs refuses bodies over
    // 11 MiB, so a single PUT of these weights could not have succeeded.
    const shape: SideNetShape = { d: 512, dff: 2048, layers: 3, r: 2, dtype: 'F32' };
    const store = new S3AdapterStore({
      ...s3.storeOptions(),
      tenant: 'big',
      backboneFingerprint: BACKBONE.fingerprint,
      multipartThresholdBytes: 6 * 1024 * 1024,
      partSizeBytes: 5 * 1024 * 1024,
    });
    const m = await store.put(adapterInput('large', 1, { shape }));
    expect(m.weights.size_bytes).toBeGreaterThan(11 * 1024 * 1024);
    const got = await store.get('large', 1);
    expect(got.manifest.weights.sha256).toBe(m.weights.sha256);
    store.blobs.destroy();
  });

  it('detects that this server ignores If-None-Match and falls back to a read-back check', async () => {
    const blobs = new S3BlobStore({ ...s3.storeOptions(), prefix: 'cond/' });
    expect(await blobs.conditionalWritesHonoured()).toBe(false);
    const one = new TextEncoder().encode('one');
    await blobs.put('k/obj', one, { createOnly: true });
    await blobs.put('k/obj', one, { createOnly: true }); // our own retry: fine
    await expect(
      blobs.put('k/obj', new TextEncoder().encode('two'), { createOnly: true }),
    ).rejects.toMatchObject({
      code: 'already_exists',
    });
    expect(new TextDecoder().decode(await blobs.get('k/obj'))).toBe('one');
    // The probe object is gone and was never under a tenant prefix.
    const rest = await new S3BlobStore({ ...s3.storeOptions() }).list('', { limit: 100 });
    expect(rest.keys.filter((k) => k.includes('probe'))).toEqual([]);
    blobs.destroy();
  });

  it('uses If-None-Match where the server honours it, for single and multipart writes', async () => {
    const shim = await new ConditionalWriteProxy(s3.port).listen();
    const blobs = new S3BlobStore({
      ...s3.storeOptions(),
      endpoint: shim.endpoint,
      prefix: 'inm/',
      multipartThresholdBytes: 6 * 1024 * 1024,
      partSizeBytes: 5 * 1024 * 1024,
    });
    try {
      expect(await blobs.conditionalWritesHonoured()).toBe(true);
      const refusedByProbe = shim.refused;
      const small = new TextEncoder().encode('one');
      await blobs.put('k/small', small, { createOnly: true });
      await blobs.put('k/small', small, { createOnly: true }); // 412, then found identical: ours
      await expect(blobs.put('k/small', new Uint8Array(3), { createOnly: true })).rejects.toMatchObject({
        code: 'already_exists',
      });
      const big = new Uint8Array(12 * 1024 * 1024).map((_, i) => i % 253);
      await blobs.put('k/big', big, { createOnly: true });
      const other = big.slice();
      other[0] = 255;
      await expect(blobs.put('k/big', other, { createOnly: true })).rejects.toMatchObject({
        code: 'already_exists',
      });
      expect(shim.refused - refusedByProbe).toBe(3);
      expect((await blobs.get('k/big'))![0]).toBe(0);
    } finally {
      blobs.destroy();
      await shim.close();
    }
  });

  it('keeps two prefixes in one bucket apart', async () => {
    const a = new S3AdapterStore({
      ...s3.storeOptions(),
      prefix: 'env-a',
      tenant: 't',
      backboneFingerprint: BACKBONE.fingerprint,
    });
    const b = new S3AdapterStore({
      ...s3.storeOptions(),
      prefix: 'env-b/',
      tenant: 't',
      backboneFingerprint: BACKBONE.fingerprint,
    });
    const m = await a.put(adapterInput('p', 1));
    await expect(b.get('p', 1)).rejects.toMatchObject({ code: 'not_found' });
    expect(await a.blobs.get(weightsKey('t', 'p', 1, m.weights.sha256))).toBeDefined();
    expect(a.blobs.location).toBe(`s3://${s3.bucket}/env-a/`);
  });

  it('reports an unreachable server as unavailable after its retries, naming the call', async () => {
    const store = new S3AdapterStore({
      ...s3.storeOptions(),
      endpoint: 'http://127.0.0.1:9', // discard port: connection refused
      tenant: 't',
      backboneFingerprint: BACKBONE.fingerprint,
      maxAttempts: 2,
      baseDelayMs: 1,
    });
    await expect(store.getManifest('x', 1)).rejects.toMatchObject({ code: 'unavailable' });
    await expect(store.getManifest('x', 1)).rejects.toThrow(
      /GET tenants\/t\/adapters\/x\/v1\/manifest\.json/,
    );
  });
});

describe('S3 configuration', () => {
  it('reads LADDER_S3_* and names the bad variable', () => {
    const o = s3OptionsFromEnv({
      LADDER_S3_BUCKET: 'adapters',
      LADDER_S3_ENDPOINT: 'https://acct.r2.cloudflarestorage.com',
      LADDER_S3_REGION: 'auto',
      LADDER_S3_PREFIX: 'prod',
      LADDER_S3_FORCE_PATH_STYLE: 'true',
      LADDER_S3_ACCESS_KEY_ID: 'id',
      LADDER_S3_SECRET_ACCESS_KEY: 'secret',
    });
    expect(o).toMatchObject({ bucket: 'adapters', region: 'auto', prefix: 'prod/', forcePathStyle: true });
    expect(o.credentials).toEqual({ accessKeyId: 'id', secretAccessKey: 'secret' });
    expect(() => s3OptionsFromEnv({})).toThrow(/LADDER_S3_BUCKET/);
    expect(() => s3OptionsFromEnv({ LADDER_S3_BUCKET: 'b', LADDER_S3_ENDPOINT: 'not a url' })).toThrow(
      /LADDER_S3_ENDPOINT/,
    );
    expect(() => s3OptionsFromEnv({ LADDER_S3_BUCKET: 'bkt', LADDER_S3_ACCESS_KEY_ID: 'id' })).toThrow(
      /LADDER_S3_SECRET_ACCESS_KEY/,
    );
  });

  it('refuses options that would fail later, all at once', () => {
    expect(() => resolveS3Options({ bucket: 'Bad_Bucket', prefix: '../x', partSizeBytes: 1024 })).toThrow(
      /bucket "Bad_Bucket".*prefix "\.\.\/x\/".*partSizeBytes/,
    );
  });
});
