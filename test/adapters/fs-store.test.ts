import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsAdapterStore, FsBlobStore } from '../../adapters/index.ts';
import { adapterInput, BACKBONE } from '../helpers/adapter-fixtures.ts';
import { adapterStoreContract } from '../helpers/adapter-store-contract.ts';

adapterStoreContract('filesystem', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'ladder-fs-store-'));
  return {
    blobs: new FsBlobStore({ dataDir }),
    open: (tenant, opts) => new FsAdapterStore({ dataDir, tenant, ...opts }),
    close: () => rm(dataDir, { recursive: true, force: true }),
  };
});

describe('FsBlobStore specifics', () => {
  it('leaves no temp files behind and lays keys out as plain paths', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'ladder-fs-'));
    try {
      const store = new FsAdapterStore({
        dataDir,
        tenant: 'acme',
        backboneFingerprint: BACKBONE.fingerprint,
      });
      const m = await store.put(adapterInput('s', 1));
      const files = await readdir(join(dataDir, 'tenants/acme/adapters/s/v1'), { recursive: true });
      expect(files.sort()).toEqual(['manifest.json', 'weights', `weights/${m.weights.sha256}.safetensors`]);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('refuses keys that would leave the data directory, even below the adapter layer', async () => {
    const blobs = new FsBlobStore({ dataDir: join(tmpdir(), 'ladder-never-created') });
    for (const key of ['../x', 'a/../../x', '/etc/passwd', 'a//b', '.tmp-x', 'a/.hidden']) {
      await expect(blobs.get(key), key).rejects.toMatchObject({ code: 'invalid_argument' });
      await expect(blobs.put(key, new Uint8Array(1)), key).rejects.toMatchObject({
        code: 'invalid_argument',
      });
    }
  });

  it('create-only writes are atomic: one of two racing writers wins, the other is refused', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'ladder-fs-race-'));
    try {
      const blobs = new FsBlobStore({ dataDir });
      const writes = Array.from({ length: 8 }, (_, i) =>
        blobs.put('k/obj', new TextEncoder().encode(`writer ${i}`), { createOnly: true }),
      );
      const results = await Promise.allSettled(writes);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const winner = results.findIndex((r) => r.status === 'fulfilled');
      expect(new TextDecoder().decode(await blobs.get('k/obj'))).toBe(`writer ${winner}`);
      expect(await readdir(join(dataDir, 'k'))).toEqual(['obj']);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
