/**
 * The object-store surface the adapter store is written against: flat keys, whole-object
 * reads and writes, prefix listing in key order. FsBlobStore and S3BlobStore implement it;
 * everything about adapters (layout, verification, tenancy) lives above, in AdapterStore, so both
 * backends behave the same by construction and one contract suite tests both.
 */
export interface BlobStore {
  /** Human-readable location for error messages, e.g. `s3://bucket/prefix` or a directory. */
  readonly location: string;
  /**
   * Writes `body` at `key`. With `createOnly`, an existing object with different bytes is an
   * AlreadyExistsError; an identical one is success (a retried write of our own object).
   */
  put(key: string, body: Uint8Array, opts?: { createOnly?: boolean }): Promise<void>;
  /** The whole object, or undefined when there is none. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Keys under `prefix` in ascending byte order, strictly after `startAfter`, at most `limit`. */
  list(prefix: string, opts: { startAfter?: string; limit: number }): Promise<BlobPage>;
  /** Idempotent: deleting a missing key is not an error. */
  delete(key: string): Promise<void>;
}

export interface BlobPage {
  keys: string[];
  /** More keys follow the last one returned. */
  truncated: boolean;
}

/** Every key under a prefix, page by page (deletes of whole prefixes use it). */
export async function* listAll(blobs: BlobStore, prefix: string, pageSize = 1000): AsyncGenerator<string> {
  let startAfter: string | undefined;
  for (;;) {
    const page = await blobs.list(prefix, { startAfter, limit: pageSize });
    yield* page.keys;
    if (!page.truncated || page.keys.length === 0) return;
    startAfter = page.keys.at(-1);
  }
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}
