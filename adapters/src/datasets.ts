import type { BlobStore } from './blob.ts';
import { InvalidArgumentError, NotFoundError } from './errors.ts';
import { checkName, datasetKey, datasetsPrefix } from './keys.ts';

/**
 * Plain objects of one tenant (training files cached on a worker, exports). No manifest: the
 * bytes are what was put, overwritten by a later put of the same name.
 */
export class DatasetStore {
  constructor(
    private readonly blobs: BlobStore,
    private readonly tenant: string,
  ) {}

  async put(name: string, data: Uint8Array): Promise<void> {
    await this.blobs.put(datasetKey(this.tenant, name), data);
  }

  async get(name: string): Promise<Uint8Array> {
    const data = await this.blobs.get(datasetKey(this.tenant, name));
    if (!data) throw new NotFoundError(`dataset ${name} not found for tenant ${this.tenant}`);
    return data;
  }

  async list(
    opts: { limit?: number; cursor?: string } = {},
  ): Promise<{ names: string[]; nextCursor: string | null }> {
    const limit = opts.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      throw new InvalidArgumentError(`list limit ${limit} must be an integer in 1..1000`);
    }
    const prefix = datasetsPrefix(this.tenant);
    const startAfter =
      opts.cursor === undefined ? undefined : datasetKey(this.tenant, checkName('list cursor', opts.cursor));
    const page = await this.blobs.list(prefix, { startAfter, limit });
    const names = page.keys.map((k) => k.slice(prefix.length));
    return { names, nextCursor: page.truncated && names.length ? names.at(-1)! : null };
  }

  async delete(name: string): Promise<void> {
    await this.blobs.delete(datasetKey(this.tenant, name));
  }
}
