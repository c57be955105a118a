import type { BackboneConfig } from '../backbone/types.ts';
import type { SideNetShape } from '../side-net/config.ts';
import { sideNetParams } from '../side-net/params.ts';

export interface TrainingMemoryEstimate {
  bytes: number;
  parts: Record<
    'optimizer' | 'backboneActivations' | 'sideActivations' | 'attention' | 'loss' | 'backboneWeights',
    number
  >;
}

/**
 * An upper-bound estimate of what one training job adds to the worker's memory, from its shapes
 * alone (known before the data is fetched): parameters with AdamW moments, gradients and the
 * updated copy; the backbone's taps for one micro-batch; the side blocks' saved activations and
 * attention scores for the backward; the chunked loss; the training backbone session's weights.
 * Float32 throughout.
 */
export function estimateTrainingMemory(
  cfg: BackboneConfig,
  shape: SideNetShape,
  opts: { batchTokens: number; maxLength: number; backboneWeightBytes: number },
): TrainingMemoryEstimate {
  const f = 4;
  const params = sideNetParams(shape).reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
  const tokens = opts.batchTokens;
  const T = Math.min(tokens, opts.maxLength);
  const rows = Math.max(1, Math.floor(tokens / T));
  const layers = shape.layers.length;
  const parts = {
    optimizer: params * 5 * f,
    backboneActivations: tokens * cfg.hiddenSize * (shape.taps.length + 1) * f,
    sideActivations:
      tokens * layers * (shape.width * 12 + shape.ffn * 4) * f + tokens * cfg.hiddenSize * 3 * f,
    attention: rows * shape.heads * T * T * layers * 3 * f,
    loss: Math.min(tokens, 8192) * cfg.vocabSize * 2 * f,
    backboneWeights: opts.backboneWeightBytes,
  };
  return { bytes: Object.values(parts).reduce((a, b) => a + b, 0), parts };
}
