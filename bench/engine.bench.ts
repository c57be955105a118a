// Training step of a side-net-sized causal transformer (d=256, 4 layers, T=512, batch 4, V=8192) through the engine, with fp32 MatMul peak and an optional PyTorch eager reference side by side.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import {
  buildTrainStep,
  CAUSAL_LM_BATCH,
  type CausalLMConfig,
  causalLMLoss,
  causalLMParams,
  causalLMTrainFlopsPerToken,
  initCausalLM,
  toModelBytes,
} from '../gpu-worker/src/graph/index.ts';
import { i64, TrainRunner } from '../gpu-worker/src/runtime/index.ts';
import { Rng } from '../gpu-worker/src/util/rng.ts';
import { matmulGflops } from './matmul.bench.ts';
import { median } from './stats.ts';

const CFG: CausalLMConfig = {
  vocab: 8192,
  d: 256,
  layers: 4,
  heads: 4,
  kvHeads: 4,
  ffn: 1024,
  ropeTheta: 10_000,
  eps: 1e-6,
};
const B = Number(process.env.BENCH_BATCH ?? 4);
const T = Number(process.env.BENCH_SEQ ?? 512);
const STEPS = Number(process.env.BENCH_STEPS ?? 6);
const here = dirname(fileURLToPath(import.meta.url));

/** PyTorch eager on the same step, when Debian's python3-torch is installed (optional). */
function torchReference(): { torch_step_ms: number } | undefined {
  const python = '/usr/bin/python3';
  if (process.env.BENCH_TORCH === '0' || !existsSync(python)) return undefined;
  try {
    execFileSync(python, ['-c', 'import torch'], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  const cfg = {
    vocab: CFG.vocab,
    d: CFG.d,
    layers: CFG.layers,
    heads: CFG.heads,
    seq: T,
    batch: B,
    ffn: CFG.ffn,
    steps: 3,
  };
  const out = execFileSync(python, [join(here, 'reference', 'torch_step.py'), JSON.stringify(cfg)], {
    encoding: 'utf8',
  });
  return JSON.parse(out.trim().split('\n').at(-1)!);
}

// The fp32 MatMul peak, measured before and after the steps (best of both): this machine is
// shared and noisy, and the ratio step_gflops / matmul_gflops should compare like with like.
const matmulBefore = await matmulGflops(1024);
const t0 = performance.now();
const specs = causalLMParams(CFG);
const { graph, layout } = buildTrainStep({
  params: specs.map(({ name, shape }) => ({ name, shape })),
  batch: CAUSAL_LM_BATCH.map((b) => ({ ...b, shape: [...b.shape] })),
  loss: (g, params, batch) => causalLMLoss(g, CFG, params, batch),
});
const model = toModelBytes(graph);
const buildMs = performance.now() - t0;
const runner = await TrainRunner.create({ layout, step: model }, initCausalLM(CFG, 1));
const sessionMs = performance.now() - t0 - buildMs;

const rng = new Rng(3);
const ids = Array.from({ length: B * T }, () => rng.int(CFG.vocab));
const labels = Array.from({ length: B * T }, () => rng.int(CFG.vocab));
const positions = Array.from({ length: B * T }, (_, i) => i % T);

const stepMs: number[] = [];
const runMs: number[] = [];
const losses: number[] = [];
for (let s = 0; s < STEPS + 2; s++) {
  const start = performance.now();
  const batch = {
    input_ids: i64(ids, [B, T]),
    labels: i64(labels, [B, T]),
    positions: i64(positions, [B, T]),
  };
  const { loss } = await runner.step(batch, 1e-3);
  const wall = performance.now() - start;
  losses.push(loss);
  if (s >= 2) {
    stepMs.push(wall);
    runMs.push(runner.timing.lastRunMs);
  }
}
await runner.dispose();

const step = median(stepMs);
const flops = causalLMTrainFlopsPerToken(CFG, T) * B * T;
const matmul = Math.max(matmulBefore, await matmulGflops(1024));
const torch = torchReference();
const stepGflops = flops / (step / 1000) / 1e9;
const result = {
  bench: 'engine',
  config: { ...CFG, batch: B, seq: T, steps: STEPS },
  params: specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0),
  graph_nodes: graph.nodes.length,
  build_ms: Math.round(buildMs),
  session_ms: Math.round(sessionMs),
  step_ms: +step.toFixed(1),
  tokens_per_s: Math.round((B * T) / (step / 1000)),
  peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  js_overhead_share:
    +(stepMs.reduce((a, b) => a + b, 0) - runMs.reduce((a, b) => a + b, 0)) /
    stepMs.reduce((a, b) => a + b, 0),
  matmul_gflops: +matmul.toFixed(1),
  step_gflops: +stepGflops.toFixed(1),
  step_over_matmul: +(stepGflops / matmul).toFixed(3),
  loss_first: +losses[0]!.toFixed(4),
  loss_last: +losses.at(-1)!.toFixed(4),
  ...(torch
    ? { torch_step_ms: torch.torch_step_ms, speedup_vs_torch: +(torch.torch_step_ms / step).toFixed(2) }
    : {}),
};
console.log(JSON.stringify(result));
