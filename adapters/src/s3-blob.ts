import { randomUUID } from 'node:crypto';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import type { BlobPage, BlobStore } from './blob.ts';
import { equalBytes } from './blob.ts';
import { AlreadyExistsError, InvalidArgumentError, StoreUnavailableError } from './errors.ts';
import { RetriesExhausted, withRetries } from './retry.ts';
import { isNotFound, isPreconditionFailed } from './s3-errors.ts';
import { multipartUpload } from './s3-multipart.ts';
import { resolveS3Options, type S3Options, type S3OptionsInput } from './s3-options.ts';

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

export interface S3BlobStoreOptions extends S3OptionsInput {
  /** Share one client (and its connection pool) between stores; built from the options if absent. */
  client?: S3Client;
}

/**
 * Objects in an S3-compatible bucket. The SDK's own retries are off (`maxAttempts: 1`): every
 * call goes through `withRetries`, one policy with a deadline per attempt that also covers
 * reading the body, so a stalled download is retried instead of hanging. Checksums are
 * computed only when the API requires them, because several S3-compatible servers mishandle
 * the streaming (aws-chunked) checksum encoding; integrity is checked end to end by sha256 above.
 */
export class S3BlobStore implements BlobStore {
  readonly location: string;
  readonly options: S3Options;
  readonly client: S3Client;
  private conditional?: Promise<boolean>;
  /** Transient failures that were retried (the fault tests read it). */
  retries = 0;

  constructor(input: S3BlobStoreOptions) {
    const { client, ...rest } = input;
    this.options = resolveS3Options(rest);
    const o = this.options;
    this.location = `s3://${o.bucket}/${o.prefix}`;
    this.client =
      client ??
      new S3Client({
        region: o.region,
        forcePathStyle: o.forcePathStyle,
        maxAttempts: 1,
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        requestHandler: {
          connectionTimeout: o.connectTimeoutMs,
          httpAgent: { keepAlive: true, maxSockets: o.maxSockets },
        },
        ...(o.endpoint ? { endpoint: o.endpoint } : {}),
        ...(o.credentials ? { credentials: o.credentials } : {}),
      });
  }

  private key(key: string): string {
    if (!key.split('/').every((s) => SEGMENT.test(s))) {
      throw new InvalidArgumentError(`storage key ${JSON.stringify(key)} has an unsafe segment`);
    }
    return this.options.prefix + key;
  }

  /** Runs one S3 call with retries; gives up with a StoreUnavailableError naming the call. */
  async call<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    try {
      return await withRetries(`${what} (${this.location})`, this.options, fn, () => {
        this.retries++;
      });
    } catch (e) {
      if (!(e instanceof RetriesExhausted)) throw e;
      // Not-found and precondition answers are for the caller to interpret; anything else
      // (access denied, a bad bucket, retries run out) means the store cannot serve us.
      if (isNotFound(e.last) || isPreconditionFailed(e.last)) throw e.last;
      throw new StoreUnavailableError(e.message, { cause: e.last });
    }
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const Key = this.key(key);
    try {
      return await this.call(`GET ${Key}`, async (abortSignal) => {
        const res = await this.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key }), {
          abortSignal,
        });
        if (!res.Body) throw new Error(`GET ${Key}: no body`);
        const bytes = await res.Body.transformToByteArray();
        // A connection cut mid-body must not pass as a short object.
        if (res.ContentLength !== undefined && bytes.byteLength !== res.ContentLength) {
          throw Object.assign(
            new Error(`GET ${Key}: got ${bytes.byteLength} of ${res.ContentLength} bytes`),
            {
              code: 'ERR_STREAM_PREMATURE_CLOSE',
            },
          );
        }
        return bytes;
      });
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async put(key: string, body: Uint8Array, opts: { createOnly?: boolean } = {}): Promise<void> {
    const Key = this.key(key);
    if (!opts.createOnly) return this.write(Key, body, false);
    if (await this.conditionalWritesHonoured()) {
      try {
        await this.write(Key, body, true);
      } catch (e) {
        if (!isPreconditionFailed(e)) throw e;
        // Taken: by someone else, or by our own earlier attempt whose answer was lost.
        await this.sameOrConflict(key, body);
      }
      return;
    }
    // The server ignores If-None-Match: check first, write, then read back. This narrows the
    // race to the time between the check and the write and catches a loser on read-back.
    if ((await this.get(key)) !== undefined) return this.sameOrConflict(key, body);
    await this.write(Key, body, false);
    await this.sameOrConflict(key, body);
  }

  private async sameOrConflict(key: string, body: Uint8Array): Promise<void> {
    const existing = await this.get(key);
    if (!existing || !equalBytes(existing, body)) {
      throw new AlreadyExistsError(`${this.location}${key} already exists with different content`);
    }
  }

  private async write(Key: string, body: Uint8Array, ifNoneMatch: boolean): Promise<void> {
    const o = this.options;
    if (body.byteLength > o.multipartThresholdBytes) {
      return multipartUpload(this, Key, body, ifNoneMatch);
    }
    await this.call(`PUT ${Key}`, (abortSignal) =>
      this.client.send(
        new PutObjectCommand({
          Bucket: o.bucket,
          Key,
          Body: body,
          ContentLength: body.byteLength,
          ...(ifNoneMatch ? { IfNoneMatch: '*' } : {}),
        }),
        { abortSignal },
      ),
    );
  }

  async list(prefix: string, opts: { startAfter?: string; limit: number }): Promise<BlobPage> {
    const o = this.options;
    const Prefix = o.prefix + prefix;
    const res = await this.call(`LIST ${Prefix}`, (abortSignal) =>
      this.client.send(
        new ListObjectsV2Command({
          Bucket: o.bucket,
          Prefix,
          MaxKeys: Math.min(opts.limit, 1000),
          ...(opts.startAfter !== undefined ? { StartAfter: o.prefix + opts.startAfter } : {}),
        }),
        { abortSignal },
      ),
    );
    const keys = (res.Contents ?? [])
      .map((c) => c.Key ?? '')
      .filter((k) => k.startsWith(Prefix))
      .map((k) => k.slice(o.prefix.length));
    return { keys, truncated: res.IsTruncated === true };
  }

  async delete(key: string): Promise<void> {
    const Key = this.key(key);
    await this.call(`DELETE ${Key}`, (abortSignal) =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key }), { abortSignal }),
    );
  }

  /**
   * Whether the server refuses a second `If-None-Match: *` write: configured, or probed once
   * with two writes to a scratch key outside every tenant's prefix.
   */
  conditionalWritesHonoured(): Promise<boolean> {
    const mode = this.options.conditionalWrites;
    if (mode !== 'auto') return Promise.resolve(mode === 'if-none-match');
    this.conditional ??= this.probe().catch((e) => {
      this.conditional = undefined; // a network failure is not an answer: probe again next time
      throw e;
    });
    return this.conditional;
  }

  private async probe(): Promise<boolean> {
    const key = `_ladder/probe/${randomUUID()}`;
    const body = new TextEncoder().encode('probe');
    await this.write(this.key(key), body, true);
    try {
      await this.write(this.key(key), body, true);
      return false;
    } catch (e) {
      if (isPreconditionFailed(e)) return true;
      throw e;
    } finally {
      await this.delete(key).catch(() => {});
    }
  }

  destroy(): void {
    this.client.destroy();
  }
}
