export { type GeluOptions, gelu, type SiluOptions, silu, swiglu } from './activation.ts';
export {
  type AttentionOptions,
  type AttentionParams,
  attentionBias,
  causalSelfAttention,
  keyBias,
  MASKED_SCORE,
} from './attention.ts';
export {
  type ChunkedAttentionOptions,
  chunkedAttention,
  DEFAULT_SCORE_BLOCK,
} from './chunked-attention.ts';
export { type DropoutOptions, dropout } from './dropout.ts';
export { halfInputLinear, type LinearOptions, linear } from './linear.ts';
export { type CrossEntropyOptions, crossEntropy } from './loss.ts';
export { layerNorm, type NormOptions, rmsNorm } from './norm.ts';
export { applyRotary, type RotaryOptions, type RotaryTables, rotaryTables } from './rotary.ts';
