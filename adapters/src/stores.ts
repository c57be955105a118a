import { FsBlobStore } from './fs-blob.ts';
import { S3BlobStore, type S3BlobStoreOptions } from './s3-blob.ts';
import { AdapterStore, type AdapterStoreOptionsInput } from './store.ts';

export type FsAdapterStoreOptions = AdapterStoreOptionsInput & { dataDir: string };

/** The embedded default: adapters, checkpoints and datasets as files under a data directory. */
export class FsAdapterStore extends AdapterStore {
  constructor(opts: FsAdapterStoreOptions) {
    const { dataDir, ...store } = opts;
    super(new FsBlobStore({ dataDir }), store);
  }
}

export type S3AdapterStoreOptions = AdapterStoreOptionsInput & S3BlobStoreOptions;

/** Production storage: any S3-compatible bucket (AWS S3, Cloudflare R2, MinIO). */
export class S3AdapterStore extends AdapterStore {
  declare readonly blobs: S3BlobStore;

  constructor(opts: S3AdapterStoreOptions) {
    const { tenant, backboneFingerprint, listConcurrency, maxWeightsBytes, keepCheckpoints, ...s3 } = opts;
    const store: AdapterStoreOptionsInput = { tenant };
    if (backboneFingerprint !== undefined) store.backboneFingerprint = backboneFingerprint;
    if (listConcurrency !== undefined) store.listConcurrency = listConcurrency;
    if (maxWeightsBytes !== undefined) store.maxWeightsBytes = maxWeightsBytes;
    if (keepCheckpoints !== undefined) store.keepCheckpoints = keepCheckpoints;
    super(new S3BlobStore(s3), store);
  }
}
