import type { BackboneConfig } from '../types.ts';

/**
 * RoPE inverse frequencies, theta^(-2i / d_h), with Llama 3.1's frequency-dependent scaling
 * (https://arxiv.org/abs/2407.21783, HF `_compute_llama3_parameters`): long wavelengths are
 * divided by `factor`, short ones kept, and the band between interpolated smoothly.
 */
export function ropeInverseFrequencies(cfg: BackboneConfig): Float32Array {
  const half = cfg.headDim / 2;
  const base = Array.from({ length: half }, (_, i) => cfg.ropeTheta ** ((-2 * i) / cfg.headDim));
  const s = cfg.ropeScaling;
  if (!s) return Float32Array.from(base);
  const lowFreqWavelen = s.originalMaxPositions / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositions / s.highFreqFactor;
  return Float32Array.from(base, (f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f;
    if (wavelen > lowFreqWavelen) return f / s.factor;
    const smooth =
      (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}
