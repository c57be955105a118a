// Adapter swap: cold load of an r=8 side net of a 0.5B-class backbone (~17 MB fp16) from S3 on 127.0.0.1 to verified, ready tensors; warm cache lookup; Zipf traffic over 1000 adapters with a budget for 50.
import { type ChildProcess, spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import {
  AdapterCache,
  type AdapterRef,
  encodeSafetensors,
  type HostTensor,
  S3AdapterStore,
  type TensorInput,
  typedArrayLoader,
} from '../adapters/index.ts';
import {
  adapterInput,
  BACKBONE,
  HALF_B_R8,
  rng,
  type SideNetShape,
} from '../test/helpers/adapter-fixtures.ts';

const COLD_SAMPLES = 30;
const WARM_SAMPLES = 20_000;
const ZIPF = { adapters: 1000, budgetAdapters: 50, s: 1.0, requests: 20_000, concurrency: 16 };
/** The Zipf catalogue uses a smaller side net (~1 MB): 1000 x 17 MB would not fit a test server's memory. */
const ZIPF_SHAPE: SideNetShape = { d: 512, dff: 1536, layers: 4, r: 8, dtype: 'F16' };

/** fauxqs in its own process (its CPU off our event loop), bound to 127.0.0.1. */
async function startServer(): Promise<{ endpoint: string; child: ChildProcess }> {
  const script = `import { buildApp } from 'fauxqs';
    const app = buildApp({ logger: false });
    await app.listen({ host: '127.0.0.1', port: 0 });
    console.log(app.server.address().port);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (d) => resolve(Number(String(d).trim())));
    child.once('exit', (code) => reject(new Error(`fauxqs exited with ${code}`)));
  });
  return { endpoint: `http://127.0.0.1:${port}`, child };
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};
const round = (x: number, d = 2) => Number(x.toFixed(d));

const t0 = performance.now();
const { endpoint, child } = await startServer();
try {
  const bucket = 'ladder-bench';
  const store = new S3AdapterStore({
    bucket,
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
    tenant: 'bench',
    backboneFingerprint: BACKBONE.fingerprint,
  });
  await store.blobs.client.send(new CreateBucketCommand({ Bucket: bucket }));

  // --- cold load: S3 GET manifest + weights, sha256, strict decode, typed-array views.
  const coldIds = ['big0', 'big1', 'big2'];
  let adapterBytes = 0;
  let tensorCount = 0;
  for (const [i, id] of coldIds.entries()) {
    const m = await store.put(adapterInput(id, 1, { shape: HALF_B_R8, seed: i + 1 }));
    adapterBytes = m.weights.size_bytes;
    tensorCount = m.tensors.length;
  }
  const source = (r: AdapterRef) => store.forTenant(r.tenant).get(r.adapterId, r.version);
  const cold = new AdapterCache<ReadonlyMap<string, HostTensor>>({
    budgetBytes: 4 * adapterBytes,
    source,
    loader: typedArrayLoader,
  });
  const coldMs: number[] = [];
  for (let i = 0; i < COLD_SAMPLES + 2; i++) {
    const ref = { tenant: 'bench', adapterId: coldIds[i % coldIds.length]!, version: 1 };
    cold.invalidate(ref);
    const s = performance.now();
    const lease = await cold.acquire(ref);
    const e = performance.now() - s;
    lease.release();
    if (i >= 2) coldMs.push(e); // first two warm up the client and JIT
  }

  // --- warm lookup: acquire + release of a resident adapter.
  const warmRef = { tenant: 'bench', adapterId: coldIds[0]!, version: 1 };
  (await cold.acquire(warmRef)).release();
  const warmUs: number[] = [];
  for (let i = 0; i < WARM_SAMPLES; i++) {
    const s = performance.now();
    const lease = await cold.acquire(warmRef);
    lease.release();
    warmUs.push((performance.now() - s) * 1000);
  }

  // --- Zipf traffic over 1000 adapters, budget for 50.
  const ids = Array.from({ length: ZIPF.adapters }, (_, i) => `z${String(i).padStart(4, '0')}`);
  let zipfBytes = 0;
  const tUpload = performance.now();
  // One encoded side net, one byte changed per adapter (distinct sha256s): generating 1000 random
  // side nets would dominate the benchmark's run time.
  const template = adapterInput('z', 1, { shape: ZIPF_SHAPE });
  const baseWeights = encodeSafetensors(template.weights as Record<string, TensorInput>);
  let nextId = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (nextId < ids.length) {
        const n = nextId++;
        const id = ids[n]!;
        const weights = baseWeights.slice();
        weights[weights.length - 1] = n & 0xff;
        weights[weights.length - 2] = n >> 8;
        const m = await store.put({ ...template, adapterId: id, weights });
        zipfBytes = m.weights.size_bytes;
      }
    }),
  );
  const uploadS = (performance.now() - tUpload) / 1000;
  const zipfCache = new AdapterCache<ReadonlyMap<string, HostTensor>>({
    // Ready bytes equal weight bytes for the typed-array loader (the header aside): room for 50.
    budgetBytes: ZIPF.budgetAdapters * zipfBytes,
    source,
    loader: typedArrayLoader,
  });
  // Popularity rank -> adapter, shuffled so that rank is unrelated to key order.
  const next = rng(2024);
  const byRank = [...ids];
  for (let i = byRank.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [byRank[i], byRank[j]] = [byRank[j]!, byRank[i]!];
  }
  const cdf: number[] = [];
  let acc = 0;
  for (let k = 1; k <= ZIPF.adapters; k++) {
    acc += 1 / k ** ZIPF.s;
    cdf.push(acc);
  }
  const sample = () => {
    const u = next() * acc;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return byRank[lo]!;
  };
  const requests = Array.from({ length: ZIPF.requests }, sample);
  const latMs: number[] = [];
  let cursor = 0;
  const tZipf = performance.now();
  await Promise.all(
    Array.from({ length: ZIPF.concurrency }, async () => {
      while (cursor < requests.length) {
        const id = requests[cursor++]!;
        const s = performance.now();
        const lease = await zipfCache.acquire({ tenant: 'bench', adapterId: id, version: 1 });
        latMs.push(performance.now() - s);
        lease.release();
      }
    }),
  );
  const zipfS = (performance.now() - tZipf) / 1000;
  const zs = zipfCache.stats();
  store.blobs.destroy();

  console.log(
    JSON.stringify({
      bench: 'swap',
      adapter_mb: round(adapterBytes / 1e6),
      adapter_tensors: tensorCount,
      cold_load_ms_p50: round(quantile(coldMs, 0.5)),
      cold_load_ms_p99: round(quantile(coldMs, 0.99)),
      cold_load_mb_per_s: round(adapterBytes / 1e6 / (quantile(coldMs, 0.5) / 1000), 0),
      warm_lookup_us_p50: round(quantile(warmUs, 0.5), 3),
      warm_lookup_us_p99: round(quantile(warmUs, 0.99), 3),
      zipf_adapters: ZIPF.adapters,
      zipf_budget_adapters: ZIPF.budgetAdapters,
      zipf_s: ZIPF.s,
      zipf_requests: ZIPF.requests,
      zipf_concurrency: ZIPF.concurrency,
      zipf_adapter_mb: round(zipfBytes / 1e6),
      hit_rate: round(zs.hits / (zs.hits + zs.misses), 4),
      p50_ms: round(quantile(latMs, 0.5), 3),
      p99_ms: round(quantile(latMs, 0.99), 2),
      zipf_loads: zs.loads,
      zipf_coalesced: zs.misses - zs.loads,
      zipf_evictions: zs.evictions,
      zipf_requests_per_s: round(ZIPF.requests / zipfS, 0),
      upload_catalogue_s: round(uploadS, 1),
      total_s: round((performance.now() - t0) / 1000, 1),
    }),
  );
} finally {
  child.kill();
}
