// Tiny backbone configurations and random weights in Hugging Face layout, held in memory, for
// tests of the graph and the generator (the loader has its own tests on real files).

import { IO } from '../../gpu-worker/src/backbone/graph/emit.ts';
import { type BackboneConfig, HF_NAMES, type TensorSource } from '../../gpu-worker/src/backbone/types.ts';
import { type Graph, toModelBytes } from '../../gpu-worker/src/graph/index.ts';
import { createSession, f32, i64, type Tensor } from '../../gpu-worker/src/runtime/index.ts';
import { rng } from './gradcheck.ts';
import type { Weights } from './reference-llm.ts';

const BASE: BackboneConfig = {
  architecture: 'llama',
  vocabSize: 61,
  hiddenSize: 32,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  headDim: 8,
  intermediateSize: 48,
  rmsNormEps: 1e-5,
  ropeTheta: 10_000,
  maxPositions: 128,
  tieWordEmbeddings: false,
  qkvBias: false,
  qkNorm: false,
};

export const VARIANTS: Record<string, BackboneConfig> = {
  'llama (GQA, llama3 rope scaling)': {
    ...BASE,
    ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 },
  },
  'qwen2 (qkv bias, tied embeddings)': {
    ...BASE,
    architecture: 'qwen2',
    qkvBias: true,
    tieWordEmbeddings: true,
  },
  'qwen3 (q/k norm, head_dim != d/H)': {
    ...BASE,
    architecture: 'qwen3',
    qkNorm: true,
    headDim: 16,
    kvHeads: 4,
  },
};

/** Random weights in HF layout, and an in-memory TensorSource over them. */
export function randomWeights(cfg: BackboneConfig, seed: number): Weights {
  const r = rng(seed);
  const weights: Weights = new Map();
  const put = (name: string, n: number, around = 0, spread = 0.2) =>
    weights.set(
      name,
      Float32Array.from({ length: n }, () => around + (r() * 2 - 1) * spread),
    );
  const { hiddenSize: d, heads: H, kvHeads: Hkv, headDim: dh, intermediateSize: ff } = cfg;
  put(HF_NAMES.embed, cfg.vocabSize * d, 0, 1);
  for (let i = 0; i < cfg.layers; i++) {
    const n = HF_NAMES.layer(i);
    put(n.inputNorm, d, 1, 0.1);
    put(n.postAttnNorm, d, 1, 0.1);
    put(n.q, H * dh * d);
    put(n.k, Hkv * dh * d);
    put(n.v, Hkv * dh * d);
    put(n.o, d * H * dh);
    if (cfg.qkvBias) {
      put(n.qBias, H * dh);
      put(n.kBias, Hkv * dh);
      put(n.vBias, Hkv * dh);
    }
    if (cfg.qkNorm) {
      put(n.qNorm, dh, 1, 0.1);
      put(n.kNorm, dh, 1, 0.1);
    }
    put(n.gate, ff * d);
    put(n.up, ff * d);
    put(n.down, d * ff);
  }
  put(HF_NAMES.finalNorm, d, 1, 0.1);
  if (!cfg.tieWordEmbeddings) put(HF_NAMES.lmHead, cfg.vocabSize * d);
  return weights;
}

export function memorySource(weights: Weights): TensorSource {
  return {
    tensors: new Map(
      [...weights].map(([name, data]) => [
        name,
        { name, dtype: 'F32' as const, shape: [data.length], file: 'memory' },
      ]),
    ),
    read: async (name) => {
      const t = weights.get(name);
      if (!t) throw new Error(`memory source: no tensor ${name}`);
      return t;
    },
    close: async () => {},
  };
}

export function emptyPast(cfg: BackboneConfig, batch: number): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (let i = 0; i < cfg.layers; i++) {
    feeds[IO.pastKey(i)] = f32(new Float32Array(0), [batch, cfg.kvHeads, 0, cfg.headDim]);
    feeds[IO.pastValue(i)] = f32(new Float32Array(0), [batch, cfg.kvHeads, 0, cfg.headDim]);
  }
  return feeds;
}

/** Every output of a backbone graph for one unpadded sequence at positions 0..T-1, no cache. */
export async function runSequence(
  graph: Graph,
  cfg: BackboneConfig,
  ids: number[],
): Promise<Record<string, Tensor>> {
  const session = await createSession(toModelBytes(graph));
  const T = ids.length;
  try {
    return await session.run({
      [IO.inputIds]: i64(ids, [1, T]),
      [IO.attentionMask]: i64(new Array(T).fill(1), [1, T]),
      [IO.positionIds]: i64(
        ids.map((_, t) => t),
        [1, T],
      ),
      ...emptyPast(cfg, 1),
    });
  } finally {
    await session.dispose();
  }
}
