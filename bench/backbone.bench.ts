// A generated ~100M-parameter Llama-shaped checkpoint (d=768, 12 layers, vocab 32000): quantize and build time, prefill and decode speed, int4 vs fp32.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  type BackboneBuild,
  BackboneStepper,
  buildBackbone,
  type KvCache,
} from '../gpu-worker/src/backbone/index.ts';
import { createSession } from '../gpu-worker/src/runtime/index.ts';
import { writeTinyCheckpoint } from '../test/helpers/tiny-checkpoint.ts';

const D = Number(process.env.BENCH_D ?? 768);
const LAYERS = Number(process.env.BENCH_LAYERS ?? 12);
const PREFILL_T = 512;
const DECODE_STEPS = Number(process.env.BENCH_DECODE_STEPS ?? 24);

const root = mkdtempSync(join(tmpdir(), 'ladder-bench-backbone-'));
try {
  const t0 = performance.now();
  const ckpt = await writeTinyCheckpoint(join(root, 'ckpt'), {
    architecture: 'llama',
    vocab: 32000,
    hidden: D,
    layers: LAYERS,
    heads: 12,
    kvHeads: 12,
    intermediate: (8 * D) / 3,
    tie: true,
    dtype: 'BF16',
    seed: 1,
  });
  const writeS = (performance.now() - t0) / 1000;
  const params = [...ckpt.weights.values()].reduce((n, t) => n + t.data.length, 0);
  ckpt.weights.clear();
  const linearParams = LAYERS * (4 * D * D + 3 * D * ((8 * D) / 3));

  const cacheDir = join(root, 'cache');
  const int4 = await buildBackbone(ckpt.dir, { cacheDir, graph: { logits: 'last' } });
  const fp32 = await buildBackbone(ckpt.dir, {
    cacheDir,
    graph: { logits: 'last', linear: { kind: 'fp32' } },
  });
  const int4Head8 = await buildBackbone(ckpt.dir, {
    cacheDir,
    graph: { logits: 'last', embeddings: 'int8' },
  });
  const cachedStart = performance.now();
  const again = await buildBackbone(ckpt.dir, { cacheDir, graph: { logits: 'last' } });
  const cachedS = (performance.now() - cachedStart) / 1000;
  if (again.built) throw new Error('second build was not served from the cache');

  const timeDecode = async (build: BackboneBuild, batch: number) => {
    const stepper = new BackboneStepper(await createSession(build.modelPath), build.config);
    const prompt = Array.from({ length: 16 }, (_, i) => 300 + i);
    let out = await stepper.step({
      ids: Array.from({ length: batch }, () => prompt),
      mask: Array.from({ length: batch }, () => prompt.map(() => 1)),
      positions: Array.from({ length: batch }, () => prompt.map((_, t) => t)),
    });
    let past: KvCache = out.present;
    const times: number[] = [];
    for (let s = 0; s < DECODE_STEPS; s++) {
      const len = prompt.length + s + 1;
      const start = performance.now();
      out = await stepper.step({
        ids: Array.from({ length: batch }, () => [400 + s]),
        mask: Array.from({ length: batch }, () => new Array(len).fill(1)),
        positions: Array.from({ length: batch }, () => [len - 1]),
        past,
      });
      times.push(performance.now() - start);
      past = out.present;
    }
    await stepper.session.dispose();
    times.sort((a, b) => a - b);
    return times[Math.floor(times.length / 2)]!;
  };

  const timePrefill = async (build: BackboneBuild) => {
    const stepper = new BackboneStepper(await createSession(build.modelPath), build.config);
    const ids = Array.from({ length: PREFILL_T }, (_, i) => 256 + (i % 60));
    const feed = { ids: [ids], mask: [ids.map(() => 1)], positions: [ids.map((_, t) => t)] };
    await stepper.step(feed);
    const times: number[] = [];
    for (let r = 0; r < 3; r++) {
      const start = performance.now();
      await stepper.step(feed);
      times.push(performance.now() - start);
    }
    await stepper.session.dispose();
    return Math.min(...times);
  };

  const prefillMs = await timePrefill(int4);
  const decodeInt4B1 = await timeDecode(int4, 1);
  const decodeFp32B1 = await timeDecode(fp32, 1);
  const decodeInt4B8 = await timeDecode(int4, 8);
  const decodeHead8B1 = await timeDecode(int4Head8, 1);
  const int4Bytes = int4.meta.weightBytes.linear;
  const mb = (n: number) => +(n / 2 ** 20).toFixed(1);
  console.log(
    JSON.stringify({
      bench: 'backbone',
      config: { d: D, layers: LAYERS, heads: 12, vocab: 32000, params },
      write_checkpoint_s: +writeS.toFixed(1),
      // Linear parameters over the whole int4 build: reading BF16, quantizing, writing.
      quantize_params_per_s: Math.round(linearParams / int4.meta.buildSeconds),
      build_s: +int4.meta.buildSeconds.toFixed(2),
      build_fp32_s: +fp32.meta.buildSeconds.toFixed(2),
      cached_load_s: +cachedS.toFixed(2),
      prefill_tokens_per_s: Math.round(PREFILL_T / (prefillMs / 1000)),
      decode_ms_b1: +decodeInt4B1.toFixed(2),
      decode_tokens_per_s_b1: Math.round(1000 / decodeInt4B1),
      decode_tokens_per_s_b8: Math.round((8 * 1000) / decodeInt4B8),
      decode_fp32_tokens_per_s_b1: Math.round(1000 / decodeFp32B1),
      int4_vs_fp32_decode_speedup: +(decodeFp32B1 / decodeInt4B1).toFixed(2),
      // The same int4 backbone with an 8-bit embedding / LM head (the fp32 head dominates decode).
      decode_tokens_per_s_b1_int8_head: Math.round(1000 / decodeHead8B1),
      weights_mb_int4: mb(int4Bytes),
      weights_mb_fp32: mb(fp32.meta.weightBytes.linear),
      embed_and_head_mb: mb(int4.meta.weightBytes.other),
      // Bytes a decode step must read: every linear layer and the (tied, fp32) LM head.
      decode_weight_gbps: +((int4Bytes + 32000 * D * 4) / (decodeInt4B1 / 1000) / 1e9).toFixed(2),
      max_layer_rel_error: +Math.max(...int4.meta.layers.map((l) => l.relError)).toFixed(4),
      peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    }),
  );
} finally {
  rmSync(root, { recursive: true, force: true });
}
