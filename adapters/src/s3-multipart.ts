import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { equalBytes } from './blob.ts';
import type { S3BlobStore } from './s3-blob.ts';
import { isNotFound } from './s3-errors.ts';

/**
 * A large object as a multipart upload: create, parts in parallel (each retried on its own, so
 * one flaky part does not restart 20 MB), complete. Nothing is visible under the key until
 * Complete succeeds; on failure the upload is aborted so its parts do not linger (and bill).
 */
export async function multipartUpload(
  store: S3BlobStore,
  Key: string,
  body: Uint8Array,
  ifNoneMatch: boolean,
): Promise<void> {
  const { bucket: Bucket, partSizeBytes, partConcurrency } = store.options;
  const created = await store.call(`CREATE-MULTIPART ${Key}`, (abortSignal) =>
    store.client.send(new CreateMultipartUploadCommand({ Bucket, Key }), { abortSignal }),
  );
  const UploadId = created.UploadId;
  if (!UploadId) throw new Error(`CREATE-MULTIPART ${Key}: the server returned no UploadId`);
  try {
    const count = Math.ceil(body.byteLength / partSizeBytes);
    const etags: string[] = new Array(count);
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < count; i = next++) {
        const part = body.subarray(i * partSizeBytes, Math.min(body.byteLength, (i + 1) * partSizeBytes));
        const res = await store.call(`UPLOAD-PART ${i + 1}/${count} ${Key}`, (abortSignal) =>
          store.client.send(
            new UploadPartCommand({
              Bucket,
              Key,
              UploadId,
              PartNumber: i + 1,
              Body: part,
              ContentLength: part.byteLength,
            }),
            { abortSignal },
          ),
        );
        if (!res.ETag) throw new Error(`UPLOAD-PART ${i + 1} ${Key}: the server returned no ETag`);
        etags[i] = res.ETag;
      }
    };
    await Promise.all(Array.from({ length: Math.min(partConcurrency, count) }, worker));
    let attempts = 0;
    let answerLost = false;
    await store.call(`COMPLETE-MULTIPART ${Key}`, async (abortSignal) => {
      attempts++;
      try {
        await store.client.send(
          new CompleteMultipartUploadCommand({
            Bucket,
            Key,
            UploadId,
            MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
            ...(ifNoneMatch ? { IfNoneMatch: '*' } : {}),
          }),
          { abortSignal },
        );
      } catch (e) {
        // A retried Complete whose first attempt succeeded (its answer lost) finds no upload.
        if (attempts > 1 && isNotFound(e)) answerLost = true;
        else throw e;
      }
    });
    if (answerLost) {
      const stored = await store.get(Key.slice(store.options.prefix.length));
      if (!stored || !equalBytes(stored, body)) {
        throw new Error(`COMPLETE-MULTIPART ${Key}: the upload is gone and the stored object is not ours`);
      }
    }
  } catch (e) {
    await store
      .call(`ABORT-MULTIPART ${Key}`, (abortSignal) =>
        store.client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId }), { abortSignal }),
      )
      .catch(() => {});
    throw e;
  }
}
