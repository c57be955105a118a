import type { TensorDtype } from '@ladder/schemas';
import type { AdapterLoader } from './cache.ts';
import { type TensorData, tensorView } from './safetensors.ts';
import type { VerifiedAdapter } from './store.ts';

export interface HostTensor {
  dtype: TensorDtype;
  shape: readonly number[];
  data: TensorData;
}

/**
 * The loader for code that runs on typed arrays (tests, the edge, benchmarks): tensors as
 * aligned typed-array views over the verified bytes. The worker's ORT loader wraps these views
 * in ort.Tensor the same way.
 */
export const typedArrayLoader: AdapterLoader<ReadonlyMap<string, HostTensor>> = {
  load(adapter: VerifiedAdapter) {
    const value = new Map<string, HostTensor>();
    let bytes = 0;
    for (const t of adapter.tensors.values()) {
      const data = tensorView(t);
      value.set(t.name, { dtype: t.dtype, shape: t.shape, data });
      bytes += data.byteLength;
    }
    return { value, bytes };
  },
};
