import type { CausalLMConfig } from '../../gpu-worker/src/graph/index.ts';

/**
 * The pretraining recipe of the default backbone, `ladder-base`: every setting in one place, so a
 * run is reproduced by `npm run pretrain` alone.
 *
 * Sizing (measured on this 2-core machine with the engine's training step, `bench/engine`):
 * d=256, 4 layers, V=8192 trains ~2,000 tokens/s (81 GFLOP/s, 0.67 of the fp32 MatMul peak), so
 * two hours are ~12M tokens; the corpus holds ~4.4M training tokens. A wider or deeper model sees
 * fewer tokens in the same time: at this budget (~5e14 FLOPs) the compute-optimal size is a few
 * million parameters (Hoffmann et al., https://arxiv.org/abs/2203.15556), and the embedding and
 * LM head (2 x 2.1M) already take half of this one.
 */
export const MODEL: CausalLMConfig = {
  vocab: 8192,
  d: 256,
  layers: 4,
  heads: 4,
  kvHeads: 4,
  ffn: 768,
  ropeTheta: 10_000,
  eps: 1e-5,
};

export const RECIPE: Recipe = {
  model: MODEL,
  /** Tokens per window (also the exported max_position_embeddings). */
  seq: 512,
  /** Windows per step: 8 x 512 = 4,096 tokens. */
  batch: 8,
  steps: 2400,
  warmupSteps: 100,
  peakLr: 2e-3,
  /** Cosine decay from the peak to this fraction of it. */
  finalLrFraction: 0.1,
  weightDecay: 0.1,
  beta2: 0.95,
  maxGradNorm: 1,
  /** Share of windows drawn from Brown (the rest from WordNet, 2.6x its size in characters). */
  brownShare: 0.4,
  seed: 20261207,
  checkpointEvery: 50,
  evalEvery: 200,
  /** Held-out windows scored at each periodic evaluation (all of them at the end). */
  evalWindows: 48,
};

export interface Recipe {
  model: CausalLMConfig;
  seq: number;
  batch: number;
  steps: number;
  warmupSteps: number;
  peakLr: number;
  finalLrFraction: number;
  weightDecay: number;
  beta2: number;
  maxGradNorm: number;
  brownShare: number;
  seed: number;
  checkpointEvery: number;
  evalEvery: number;
  evalWindows: number;
}

/** Linear warmup, then cosine decay to finalLrFraction x peak at the last step. */
export function learningRate(r: Recipe, step: number): number {
  if (step < r.warmupSteps) return (r.peakLr * (step + 1)) / r.warmupSteps;
  const t = (step - r.warmupSteps) / Math.max(1, r.steps - 1 - r.warmupSteps);
  const floor = r.peakLr * r.finalLrFraction;
  return floor + (r.peakLr - floor) * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, t)));
}
