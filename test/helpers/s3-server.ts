import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { buildApp } from 'fauxqs';

/** A real S3-compatible server (fauxqs, in memory) on 127.0.0.1 with one bucket. */
export interface LocalS3 {
  endpoint: string;
  bucket: string;
  port: number;
  /** Options for S3BlobStore / S3AdapterStore pointing at this server. */
  storeOptions(): {
    bucket: string;
    endpoint: string;
    region: string;
    forcePathStyle: true;
    credentials: { accessKeyId: string; secretAccessKey: string };
  };
  stop(): Promise<void>;
}

export const TEST_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };

export async function startLocalS3(bucket = 'ladder-test'): Promise<LocalS3> {
  // buildApp + listen on loopback: startFauxqs() would bind 0.0.0.0.
  const app = buildApp({ logger: false });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('fauxqs: no TCP address');
  const endpoint = `http://127.0.0.1:${address.port}`;
  const admin = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: TEST_CREDENTIALS,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  await admin.send(new CreateBucketCommand({ Bucket: bucket }));
  admin.destroy();
  return {
    endpoint,
    bucket,
    port: address.port,
    storeOptions: () => ({
      bucket,
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: TEST_CREDENTIALS,
    }),
    stop: () => app.close(),
  };
}
