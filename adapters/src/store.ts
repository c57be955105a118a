import {
  ADAPTER_FORMAT_VERSION,
  AdapterManifest,
  describeIssues,
  type SideNetConfigInput,
  type TensorInfo,
  type TrainingSummary,
} from '@ladder/schemas';
import { type BlobStore, listAll } from './blob.ts';
import { CheckpointStore } from './checkpoints.ts';
import { DatasetStore } from './datasets.ts';
import {
  AlreadyExistsError,
  BackboneMismatchError,
  IntegrityError,
  InvalidArgumentError,
  isAdapterError,
  NotFoundError,
} from './errors.ts';
import { canonicalJson, sha256Hex } from './hash.ts';
import {
  adapterKey,
  adapterPrefix,
  adaptersPrefix,
  checkId,
  checkVersion,
  manifestKey,
  parseManifestKey,
  weightsKey,
} from './keys.ts';
import { readJson } from './read-json.ts';
import { decodeSafetensors, encodeSafetensors, type RawTensor, type TensorInput } from './safetensors.ts';

export interface AdapterStoreOptions {
  /** The one tenant this handle reads and writes; every key is under `tenants/{tenant}/`. */
  tenant: string;
  /** The running backbone's fingerprint; `get` refuses adapters trained on another. */
  backboneFingerprint?: string;
  /** Manifests fetched at once by `list`. */
  listConcurrency: number;
  /** Refuse to publish weights larger than this (an r=8 side net of a 7B model is ~100s of MB). */
  maxWeightsBytes: number;
  /** Checkpoints kept per job; older ones are deleted after a new one lands. */
  keepCheckpoints: number;
}

export const STORE_DEFAULTS = {
  listConcurrency: 8,
  maxWeightsBytes: 2 * 1024 ** 3,
  keepCheckpoints: 2,
} satisfies Omit<AdapterStoreOptions, 'tenant'>;

export type AdapterStoreOptionsInput = Partial<AdapterStoreOptions> & Pick<AdapterStoreOptions, 'tenant'>;

export interface PutAdapterInput {
  adapterId: string;
  version: number;
  name: string;
  backbone: { name: string; fingerprint: string };
  sideNet: SideNetConfigInput;
  training: Omit<TrainingSummary, 'final_losses'> & {
    final_losses: { train: number; validation?: number | null };
  };
  /** The weights: tensors to encode, or an already-encoded safetensors file (validated). */
  weights: Record<string, TensorInput> | Uint8Array;
  createdAt?: Date;
}

/** An adapter whose manifest validated and whose weights matched its sha256, size and index. */
export interface VerifiedAdapter {
  manifest: AdapterManifest;
  /** Views into `weights`, by tensor name. */
  tensors: ReadonlyMap<string, RawTensor>;
  weights: Uint8Array;
}

export interface AdapterPage {
  items: AdapterManifest[];
  /** Pass back as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
}

/**
 * Adapters of one tenant over any BlobStore. Versions are immutable and published weights
 * first, manifest last (create-only): the manifest's presence is what makes a version exist, so
 * a half-finished upload is never visible. Weights live under their own sha256, so two racing
 * publishers of one version never overwrite each other's bytes; the loser's are unreferenced.
 */
export class AdapterStore {
  readonly tenant: string;
  readonly options: AdapterStoreOptions;
  readonly checkpoints: CheckpointStore;
  readonly datasets: DatasetStore;

  constructor(
    readonly blobs: BlobStore,
    opts: AdapterStoreOptionsInput,
  ) {
    this.options = { ...STORE_DEFAULTS, ...opts } satisfies AdapterStoreOptions;
    this.tenant = checkId('tenant', opts.tenant);
    this.checkpoints = new CheckpointStore(blobs, this.tenant, this.options.keepCheckpoints);
    this.datasets = new DatasetStore(blobs, this.tenant);
  }

  /** A handle for another tenant over the same backend (one S3 client for all tenants). */
  forTenant(tenant: string): AdapterStore {
    return new AdapterStore(this.blobs, { ...this.options, tenant });
  }

  async put(input: PutAdapterInput): Promise<AdapterManifest> {
    const id = checkId('adapter id', input.adapterId);
    const version = checkVersion(input.version);
    const weights = input.weights instanceof Uint8Array ? input.weights : encodeSafetensors(input.weights);
    if (weights.byteLength > this.options.maxWeightsBytes) {
      throw new InvalidArgumentError(
        `adapter ${id} v${version}: weights are ${weights.byteLength} bytes, over the ${this.options.maxWeightsBytes}-byte limit`,
      );
    }
    let tensors: TensorInfo[];
    try {
      tensors = decodeSafetensors(weights, `adapter ${id} v${version} weights`).tensors.map(
        ({ name, dtype, shape }) => ({ name, dtype, shape }),
      );
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message, { cause: e });
    }
    const parsed = AdapterManifest.safeParse({
      format: 'ladder.adapter',
      format_version: ADAPTER_FORMAT_VERSION,
      adapter_id: id,
      tenant: this.tenant,
      name: input.name,
      version,
      created_at: (input.createdAt ?? new Date()).toISOString(),
      backbone: input.backbone,
      side_net: input.sideNet,
      tensors,
      weights: { format: 'safetensors', sha256: sha256Hex(weights), size_bytes: weights.byteLength },
      training: input.training,
    });
    if (!parsed.success) {
      throw new InvalidArgumentError(
        `adapter ${id} v${version}: invalid manifest: ${describeIssues(parsed.error)}`,
      );
    }
    const manifest = parsed.data;
    const mKey = manifestKey(this.tenant, id, version);
    // Cheap check first, so a duplicate publish does not upload its weights for nothing.
    const existing = await this.readManifest(mKey);
    if (existing) return this.sameOrConflict(existing, manifest);
    await this.blobs.put(weightsKey(this.tenant, id, version, manifest.weights.sha256), weights);
    try {
      await this.blobs.put(mKey, new TextEncoder().encode(JSON.stringify(manifest, null, 2)), {
        createOnly: true,
      });
    } catch (e) {
      if (!isAdapterError(e, 'already_exists')) throw e;
      const winner = await this.readManifest(mKey);
      if (!winner) throw e;
      return this.sameOrConflict(winner, manifest);
    }
    return manifest;
  }

  /** A re-publish of identical content (a retry) returns the stored manifest; anything else is refused. */
  private sameOrConflict(existing: AdapterManifest, ours: AdapterManifest): AdapterManifest {
    const strip = (m: AdapterManifest) => canonicalJson({ ...m, created_at: null });
    if (strip(existing) === strip(ours)) return existing;
    throw new AlreadyExistsError(
      `adapter ${ours.adapter_id} v${ours.version} of tenant ${this.tenant} already exists (versions are immutable)`,
    );
  }

  /** The validated manifest, or a NotFoundError. */
  async getManifest(adapterId: string, version: number): Promise<AdapterManifest> {
    const key = manifestKey(this.tenant, adapterId, version);
    const m = await this.readManifest(key);
    if (!m) throw new NotFoundError(`adapter ${adapterId} v${version} not found for tenant ${this.tenant}`);
    return m;
  }

  /** Fetches and verifies an adapter: manifest, backbone, size, sha256, safetensors header, tensor index. */
  async get(adapterId: string, version: number): Promise<VerifiedAdapter> {
    const manifest = await this.getManifest(adapterId, version);
    const where = `adapter ${adapterId} v${version} of tenant ${this.tenant}`;
    const running = this.options.backboneFingerprint;
    if (running === undefined) {
      throw new InvalidArgumentError(
        `${where}: this store handle has no backboneFingerprint to check against`,
      );
    }
    if (manifest.backbone.fingerprint !== running) {
      throw new BackboneMismatchError(
        `${where} was trained on backbone ${manifest.backbone.name} (${manifest.backbone.fingerprint.slice(0, 12)}), ` +
          `not the running one (${running.slice(0, 12)})`,
      );
    }
    const wKey = weightsKey(this.tenant, adapterId, version, manifest.weights.sha256);
    const weights = await this.blobs.get(wKey);
    if (!weights) throw new IntegrityError(`${where}: manifest present but weights ${wKey} missing`);
    if (weights.byteLength !== manifest.weights.size_bytes) {
      throw new IntegrityError(
        `${where}: weights are ${weights.byteLength} bytes, manifest says ${manifest.weights.size_bytes}`,
      );
    }
    const sha = sha256Hex(weights);
    if (sha !== manifest.weights.sha256) {
      throw new IntegrityError(
        `${where}: weights sha256 ${sha} does not match the manifest's ${manifest.weights.sha256}`,
      );
    }
    let decoded: RawTensor[];
    try {
      decoded = decodeSafetensors(weights, wKey).tensors;
    } catch (e) {
      throw new IntegrityError(`${where}: ${(e as Error).message}`, { cause: e });
    }
    const tensors = new Map(decoded.map((t) => [t.name, t]));
    for (const info of manifest.tensors) {
      const t = tensors.get(info.name);
      if (!t || t.dtype !== info.dtype || t.shape.join() !== info.shape.join()) {
        throw new IntegrityError(
          `${where}: tensor "${info.name}" in the weights does not match the manifest's index`,
        );
      }
    }
    if (tensors.size !== manifest.tensors.length) {
      throw new IntegrityError(
        `${where}: weights hold ${tensors.size} tensors, the manifest lists ${manifest.tensors.length}`,
      );
    }
    return { manifest, tensors, weights };
  }

  /**
   * Manifests of this tenant (or of one adapter), in key order: by adapter id, then by version
   * key (`v10` sorts before `v2`). The cursor is opaque; a crafted one cannot leave the prefix.
   */
  async list(opts: { adapterId?: string; limit?: number; cursor?: string } = {}): Promise<AdapterPage> {
    const limit = opts.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      throw new InvalidArgumentError(`list limit ${limit} must be an integer in 1..1000`);
    }
    const base = adaptersPrefix(this.tenant);
    const prefix = opts.adapterId === undefined ? base : adapterPrefix(this.tenant, opts.adapterId);
    let startAfter =
      opts.cursor === undefined
        ? undefined
        : base + this.decodeCursor(opts.cursor, prefix.slice(base.length));
    const found: { key: string; rel: string }[] = [];
    // Collect one more than asked so the last page says so instead of returning an empty one.
    while (found.length <= limit) {
      const page = await this.blobs.list(prefix, { startAfter, limit: 1000 });
      for (const key of page.keys) {
        const rel = key.slice(base.length);
        if (parseManifestKey(rel)) found.push({ key, rel });
      }
      if (!page.truncated || page.keys.length === 0) break;
      startAfter = page.keys.at(-1);
    }
    const more = found.length > limit;
    const chosen = found.slice(0, limit);
    const manifests = await mapLimit(chosen, this.options.listConcurrency, (f) => this.readManifest(f.key));
    return {
      // A version deleted between listing and reading is simply absent.
      items: manifests.filter((m): m is AdapterManifest => m !== undefined),
      nextCursor: more ? Buffer.from(chosen.at(-1)!.rel).toString('base64url') : null,
    };
  }

  private decodeCursor(cursor: string, within: string): string {
    const rel = /^[A-Za-z0-9_-]{1,400}$/.test(cursor)
      ? Buffer.from(cursor, 'base64url').toString('utf8')
      : '';
    if (!parseManifestKey(rel) || !rel.startsWith(within)) {
      throw new InvalidArgumentError(`list cursor ${JSON.stringify(cursor.slice(0, 64))} is invalid`);
    }
    return rel;
  }

  /**
   * Deletes one version, or every version of an adapter: manifests first (the version vanishes
   * at once), then the weights. Returns how many versions were visible before.
   */
  async delete(adapterId: string, version?: number): Promise<number> {
    const prefix =
      version === undefined
        ? adapterPrefix(this.tenant, adapterId)
        : adapterKey(this.tenant, adapterId, version);
    const keys: string[] = [];
    for await (const k of listAll(this.blobs, prefix)) keys.push(k);
    const base = adaptersPrefix(this.tenant);
    const manifests = keys.filter((k) => parseManifestKey(k.slice(base.length)));
    for (const k of manifests) await this.blobs.delete(k);
    await mapLimit(
      keys.filter((k) => !manifests.includes(k)),
      this.options.listConcurrency,
      (k) => this.blobs.delete(k),
    );
    return manifests.length;
  }

  private async readManifest(key: string): Promise<AdapterManifest | undefined> {
    const m = await readJson(this.blobs, key, AdapterManifest);
    if (!m) return undefined;
    // A manifest is only trusted at the key it names: a copied or moved one is refused.
    const expected = manifestKey(m.tenant, m.adapter_id, m.version);
    if (expected !== key) throw new IntegrityError(`${key}: manifest names ${expected}`);
    return m;
  }
}

export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
