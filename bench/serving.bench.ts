// Serving: tokens/s with 1 vs 32 distinct adapters mixed in one batch (one backbone pass per step) vs one backbone pass per adapter (LoRA-style), cost of scoring with 8 adapters over 1, TTFT under load, idle and while a training job runs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { FsAdapterStore, type Lease } from '../adapters/index.ts';
import { checkpointFingerprint, loadConfig } from '../gpu-worker/src/backbone/checkpoint/index.ts';
import {
  acquireAdapter,
  ComputeGate,
  createAdapterCache,
  type ReadyAdapter,
  Scheduler,
  ServingModel,
  scoreWithAdapters,
  workerMetrics,
} from '../gpu-worker/src/serving/index.ts';
import { initSideNet, lstPreset, resolveSideNet, sideNetParams } from '../gpu-worker/src/side-net/index.ts';
import { Rng } from '../gpu-worker/src/util/rng.ts';
import { type AdapterRef, SamplingParams } from '../schemas/index.ts';
import { writeTinyCheckpoint } from '../test/helpers/tiny-checkpoint.ts';
import { measureTtft } from './serving.ttft.ts';
import { median } from './stats.ts';

const ADAPTERS = 32;
const MAX_TOKENS = Number(process.env.BENCH_TOKENS ?? 24);
/** Single and mixed runs alternate this many times; medians are reported (CPU noise). */
const REPEATS = Number(process.env.BENCH_REPEATS ?? 5);
/** Requests probed one at a time for time to first token, idle and while a training job runs. */
const TTFT_PROBES = Number(process.env.BENCH_TTFT_PROBES ?? 60);
const dims = { hidden: 256, layers: 6, heads: 4, kvHeads: 2, intermediate: 768, vocab: 2048 };

const root = mkdtempSync(join(tmpdir(), 'ladder-bench-serving-'));
try {
  const ckpt = await writeTinyCheckpoint(join(root, 'backbone'), { architecture: 'llama', seed: 1, ...dims });
  const cfg = await loadConfig(ckpt.dir);
  const fingerprint = await checkpointFingerprint(ckpt.dir);
  const dataDir = join(root, 'data');
  const shape = resolveSideNet(cfg, lstPreset(cfg, { reduction_factor: 8 }));
  const refs: AdapterRef[] = [];
  for (let i = 0; i < ADAPTERS; i++) {
    const w = initSideNet(shape, i + 1);
    const rng = new Rng(i + 1000);
    const up = w['up.weight']!;
    for (let k = 0; k < up.length; k++) up[k] = rng.normal() * 0.5;
    const tenant = `tenant-${i % 8}`;
    const m = await new FsAdapterStore({ dataDir, tenant }).put({
      adapterId: `a${i}`,
      version: 1,
      name: `a${i}`,
      backbone: { name: 'bench', fingerprint },
      sideNet: shape.config,
      training: { job_id: 'bench', steps: 0, tokens: 0, final_losses: { train: 0 } },
      weights: Object.fromEntries(
        sideNetParams(shape).map((p) => [
          p.name,
          { dtype: 'F32' as const, shape: p.shape, data: w[p.name]! },
        ]),
      ),
    });
    refs.push({ tenant, adapter_id: m.adapter_id, version: 1, sha256: m.weights.sha256 });
  }

  const model = await ServingModel.open({ backboneDir: ckpt.dir, cacheDir: join(root, 'cache') });
  const store = new FsAdapterStore({ dataDir, tenant: 'system', backboneFingerprint: model.fingerprint });
  const cache = createAdapterCache({ model, store, budgetBytes: 1024 ** 3 });
  const gate = new ComputeGate();
  const prompt = (i: number) => model.tokenizer.encode(`Hello World ${i} the cat is on the mat and`);
  const params = (() => {
    const s = SamplingParams.parse({ max_tokens: MAX_TOKENS, temperature: 0 });
    return { maxTokens: s.max_tokens, temperature: 0, topP: 1, topK: 0, stop: [], stopTokenIds: [] };
  })();

  /** 32 requests at once through a scheduler; adapters chosen by `pick`. */
  async function load(maxBatch: number, pick: (i: number) => AdapterRef) {
    const metrics = workerMetrics();
    const scheduler = new Scheduler(model, gate, metrics, {
      maxBatch,
      maxBatchTokens: 1 << 20,
      maxQueue: 1000,
      maxQueuePerTenant: 1000,
      batchWaitMs: 0,
      prefixCacheBytes: 0,
    });
    const leases: Lease<ReadyAdapter>[] = await Promise.all(
      Array.from({ length: ADAPTERS }, (_, i) => acquireAdapter(cache, pick(i))),
    );
    const before = { ...model.counters };
    const t0 = performance.now();
    const outs = await Promise.all(
      leases.map((adapter, i) =>
        scheduler.submit({
          requestId: `r${i}`,
          tenant: pick(i).tenant,
          prompt: prompt(i),
          params,
          seed: 0,
          adapter,
        }),
      ),
    );
    const seconds = (performance.now() - t0) / 1000;
    await scheduler.close();
    const tokens = outs.reduce((n, o) => n + o.tokens.length, 0);
    const steps = model.counters.decodeSteps - before.decodeSteps;
    const prefills = model.counters.prefillRuns - before.prefillRuns;
    const sidePasses = model.counters.sidePasses - before.sidePasses;
    const rowCopies = model.counters.adapterRowCopies - before.adapterRowCopies;
    return { tokensPerS: tokens / seconds, ttft: metrics.ttft, steps, prefills, sidePasses, rowCopies };
  }

  await load(ADAPTERS, (i) => refs[i]!); // warm-up: sessions, caches, allocator
  await load(ADAPTERS, () => refs[0]!);
  const singles: Awaited<ReturnType<typeof load>>[] = [];
  const mixes: Awaited<ReturnType<typeof load>>[] = [];
  for (let r = 0; r < REPEATS; r++) {
    singles.push(await load(ADAPTERS, () => refs[0]!));
    mixes.push(await load(ADAPTERS, (i) => refs[i]!));
  }
  const single = { tokensPerS: median(singles.map((x) => x.tokensPerS)) };
  const mixed = { ...mixes.at(-1)!, tokensPerS: median(mixes.map((x) => x.tokensPerS)) };
  const separate = await load(1, (i) => refs[i]!);

  const longPrompt = { text: 'Hello World the cat is on the mat and '.repeat(12) };
  const scoreTime = async (k: number) => {
    const leases = await Promise.all(refs.slice(0, k).map((r) => acquireAdapter(cache, { ...r })));
    const req = {
      request_id: 'bench',
      tenant: refs[0]!.tenant,
      prompt: longPrompt,
      completion: ' the cat',
      adapters: refs.slice(0, k),
    };
    await scoreWithAdapters(model, gate, req, leases); // warm
    return {
      once: async () => {
        const t0 = performance.now();
        await scoreWithAdapters(model, gate, req, leases);
        return performance.now() - t0;
      },
      release: () => {
        for (const l of leases) l.release();
      },
    };
  };
  const [score1, score8] = [await scoreTime(1), await scoreTime(8)];
  const t1: number[] = [];
  const t8: number[] = [];
  for (let i = 0; i < 5 * REPEATS; i++) {
    t1.push(await score1.once());
    t8.push(await score8.once());
  }
  score1.release();
  score8.release();
  const k1 = median(t1);
  const k8 = median(t8);

  const ttft = await measureTtft({
    model,
    gate,
    modelDir: ckpt.dir,
    workDir: join(root, 'train'),
    probes: TTFT_PROBES,
    adapter: (i) => acquireAdapter(cache, refs[i % 8]!),
  });

  const result = {
    backbone: { ...dims, linear: 'int4 MatMulNBits' },
    adapters: ADAPTERS,
    max_tokens: MAX_TOKENS,
    tokens_per_s_1_adapter: Number(single.tokensPerS.toFixed(1)),
    tokens_per_s_32_adapters: Number(mixed.tokensPerS.toFixed(1)),
    mixed_over_single: Number((mixed.tokensPerS / single.tokensPerS).toFixed(3)),
    tokens_per_s_32_adapters_separate_passes: Number(separate.tokensPerS.toFixed(1)),
    /** Side-net session runs per backbone run (prefill or decode step) with 32 adapters mixed. */
    side_passes_per_step_32_adapters: Number((mixed.sidePasses / (mixed.steps + mixed.prefills)).toFixed(2)),
    /** Adapter weight rows copied into stacked weights over that whole run (prefill, batch forming). */
    adapter_rows_copied_32_adapters: mixed.rowCopies,
    score_ms_k1: Number(k1.toFixed(2)),
    score_ms_k8: Number(k8.toFixed(2)),
    shared_prefill_k8_over_k1: Number((k8 / k1).toFixed(3)),
    ttft_ms_p50: Number((mixed.ttft.quantile(0.5) * 1000).toFixed(1)),
    ttft_ms_p99: Number((mixed.ttft.quantile(0.99) * 1000).toFixed(1)),
    ...ttft,
  };
  console.log(
    `serving: ${result.tokens_per_s_32_adapters} tok/s with 32 adapters in one batch vs ${result.tokens_per_s_1_adapter} with one adapter (x${result.mixed_over_single}); ` +
      `${result.tokens_per_s_32_adapters_separate_passes} tok/s with a backbone pass per adapter; score k8/k1 = ${result.shared_prefill_k8_over_k1}`,
  );
  await model.dispose();
  console.log(JSON.stringify(result));
} finally {
  rmSync(root, { recursive: true, force: true });
}
