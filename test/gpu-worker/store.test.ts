import { FsAdapterStore, S3AdapterStore } from '@ladder/adapters';
import { describe, expect, it } from 'vitest';
import { openAdapterStore } from '../../gpu-worker/src/store.ts';

const FP = 'a'.repeat(64);

describe("the worker's adapter store", () => {
  it('is the filesystem store by default and an S3 store when LADDER_S3_BUCKET is set', () => {
    expect(openAdapterStore('/tmp/ladder-store-test', FP, {})).toBeInstanceOf(FsAdapterStore);
    const s3 = openAdapterStore('/tmp/ladder-store-test', FP, {
      LADDER_S3_BUCKET: 'adapters',
      LADDER_S3_ENDPOINT: 'http://127.0.0.1:9000',
      LADDER_S3_REGION: 'auto',
      LADDER_S3_FORCE_PATH_STYLE: 'true',
    });
    expect(s3).toBeInstanceOf(S3AdapterStore);
  });

  it('names a bad S3 variable', () => {
    expect(() =>
      openAdapterStore('/tmp/x', FP, { LADDER_S3_BUCKET: 'b', LADDER_S3_ENDPOINT: 'not a url' }),
    ).toThrow(/LADDER_S3_ENDPOINT/);
  });
});
