import {
  AdapterCache,
  type AdapterStore,
  IntegrityError,
  type Lease,
  tensorView,
  type VerifiedAdapter,
} from '@ladder/adapters';
import type { AdapterRef } from '@ladder/schemas';
import type { Tensor } from '../runtime/index.ts';
import { adapterTensors } from '../side-net/generate.ts';
import type { ServingModel, SideModel } from './model.ts';

/** An adapter verified from the store and ready to feed its shape's shared side session. */
export interface ReadyAdapter {
  /** `tenant/adapter_id/vN`: groups rows of one adapter in a batch. */
  key: string;
  side: SideModel;
  tensors: Record<string, Tensor>;
}

/**
 * The worker's adapter cache: the store verifies (manifest, backbone fingerprint, size, sha256,
 * tensor index), then the loader turns float32 views into ORT tensors for the side session of
 * the manifest's shape. Anything that fails is never cached, so never served.
 */
export function createAdapterCache(opts: {
  model: ServingModel;
  store: AdapterStore;
  budgetBytes: number;
  /** Keys of the adapters resident now (for heartbeats and the adapters list). */
  loaded?: Set<string>;
}): AdapterCache<ReadyAdapter> {
  const { model, store } = opts;
  return new AdapterCache<ReadyAdapter>({
    budgetBytes: opts.budgetBytes,
    source: (ref) => store.forTenant(ref.tenant).get(ref.adapterId, ref.version),
    loader: {
      async load(adapter: VerifiedAdapter) {
        const m = adapter.manifest;
        const where = `adapter ${m.adapter_id} v${m.version} of tenant ${m.tenant}`;
        const weights: Record<string, Float32Array> = {};
        let bytes = 0;
        for (const t of adapter.tensors.values()) {
          if (t.dtype !== 'F32')
            throw new IntegrityError(`${where}: tensor ${t.name} is ${t.dtype}, not F32`);
          weights[t.name] = tensorView(t) as Float32Array;
          bytes += t.data.byteLength;
        }
        let side: SideModel;
        let tensors: Record<string, Tensor>;
        try {
          side = await model.side(m.side_net);
          tensors = adapterTensors(side.shape, weights);
        } catch (e) {
          throw new IntegrityError(`${where}: ${(e as Error).message}`, { cause: e });
        }
        const key = `${m.tenant}/${m.adapter_id}/v${m.version}`;
        opts.loaded?.add(key);
        return { value: { key, side, tensors }, bytes };
      },
      dispose(value) {
        opts.loaded?.delete(value.key);
      },
    },
  });
}

/** A pinned adapter for one request; refuses a stored version whose weights are not the ones asked for. */
export async function acquireAdapter(
  cache: AdapterCache<ReadyAdapter>,
  ref: AdapterRef,
): Promise<Lease<ReadyAdapter>> {
  const lease = await cache.acquire({ tenant: ref.tenant, adapterId: ref.adapter_id, version: ref.version });
  if (lease.manifest.weights.sha256 !== ref.sha256) {
    lease.release();
    throw new IntegrityError(
      `adapter ${ref.adapter_id} v${ref.version} of tenant ${ref.tenant}: stored weights have sha256 ` +
        `${lease.manifest.weights.sha256}, the request names ${ref.sha256}`,
    );
  }
  return lease;
}
