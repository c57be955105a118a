/**
 * The contracts between the backbone's parts: the checkpoint loader produces a BackboneConfig and
 * a TensorSource; quantization turns linear weights into MatMulNBits tensors; the graph emitter
 * and the generator consume both. Each part lives in its own folder under backbone/.
 */

export type Architecture = 'llama' | 'qwen2' | 'qwen3';

/** llama3-style RoPE frequency scaling (Llama 3.1+ `rope_scaling` with rope_type "llama3"). */
export interface Llama3RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}

/** What the backbone needs from config.json, normalised across the supported families. */
export interface BackboneConfig {
  architecture: Architecture;
  vocabSize: number;
  hiddenSize: number; // d
  layers: number; // L
  heads: number; // H
  kvHeads: number; // H_kv
  headDim: number; // d_h (config head_dim, else hidden / heads)
  intermediateSize: number; // d_ff
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling?: Llama3RopeScaling;
  maxPositions: number;
  tieWordEmbeddings: boolean;
  /** Qwen2: q, k, v projections carry biases. */
  qkvBias: boolean;
  /** Qwen3: per-head RMSNorm on q and k before RoPE. */
  qkNorm: boolean;
}

export type SourceDType = 'F32' | 'F16' | 'BF16';

export interface TensorInfo {
  name: string;
  dtype: SourceDType;
  shape: number[];
  /** Which file holds it (for error messages). */
  file: string;
}

/**
 * Checkpoint tensors read one at a time through file offsets, so a large checkpoint is never held
 * in memory at once. `read` converts to float32.
 */
export interface TensorSource {
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  read(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

/** HF parameter names of the supported families. */
export const HF_NAMES = {
  embed: 'model.embed_tokens.weight',
  finalNorm: 'model.norm.weight',
  lmHead: 'lm_head.weight',
  layer: (i: number) => ({
    inputNorm: `model.layers.${i}.input_layernorm.weight`,
    postAttnNorm: `model.layers.${i}.post_attention_layernorm.weight`,
    q: `model.layers.${i}.self_attn.q_proj.weight`, // (H*dh, d)
    k: `model.layers.${i}.self_attn.k_proj.weight`, // (Hkv*dh, d)
    v: `model.layers.${i}.self_attn.v_proj.weight`, // (Hkv*dh, d)
    o: `model.layers.${i}.self_attn.o_proj.weight`, // (d, H*dh)
    qBias: `model.layers.${i}.self_attn.q_proj.bias`,
    kBias: `model.layers.${i}.self_attn.k_proj.bias`,
    vBias: `model.layers.${i}.self_attn.v_proj.bias`,
    qNorm: `model.layers.${i}.self_attn.q_norm.weight`, // (dh)
    kNorm: `model.layers.${i}.self_attn.k_norm.weight`, // (dh)
    gate: `model.layers.${i}.mlp.gate_proj.weight`, // (d_ff, d)
    up: `model.layers.${i}.mlp.up_proj.weight`, // (d_ff, d)
    down: `model.layers.${i}.mlp.down_proj.weight`, // (d, d_ff)
  }),
} as const;

/**
 * A linear layer quantized blockwise along K (the input axis) in com.microsoft MatMulNBits
 * layout, for y = x W^T with W the HF (N out, K in) weight:
 *   packed      uint8 [N, ceil(K / blockSize), blockSize * bits / 8]  (4-bit: low nibble = even k)
 *   scales      float32 [N, ceil(K / blockSize)]
 *   zeroPoints  uint8 [N, ceil(kBlocks * bits / 8)]  (4-bit: two per byte, low nibble first)
 */
export interface QuantizedLinear {
  bits: 4 | 8;
  blockSize: number;
  N: number;
  K: number;
  packed: Uint8Array;
  scales: Float32Array;
  zeroPoints: Uint8Array;
  /** ||W - dequant(Q)||_F / ||W||_F */
  relError: number;
}
