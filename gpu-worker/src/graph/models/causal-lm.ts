import { Rng } from '../../util/rng.ts';
import type { DType, Graph, Value } from '../builder.ts';
import { silu } from '../nn/activation.ts';
import { attentionBias, causalSelfAttention } from '../nn/attention.ts';
import { linear } from '../nn/linear.ts';
import { crossEntropy } from '../nn/loss.ts';
import { rmsNorm } from '../nn/norm.ts';
import { rotaryTables } from '../nn/rotary.ts';
import { add, mul } from '../ops/arith.ts';
import { gather } from '../ops/gather.ts';

/**
 * A small Llama-style causal language model built with the engine: the architecture of a
 * side-network block stack (RMSNorm, RoPE, grouped-query causal attention, SwiGLU), trained
 * end to end. The engine's tests and the `engine` benchmark train it; the side networks reuse
 * its block.
 */
export interface CausalLMConfig {
  vocab: number;
  d: number;
  layers: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  ropeTheta: number;
  eps: number;
}

export interface ParamSpec {
  name: string;
  shape: number[];
  dtype: DType;
  /** How to initialise: normal(0, std), ones, or zeros. */
  init: { kind: 'normal'; std: number } | { kind: 'ones' } | { kind: 'zeros' };
}

export function causalLMParams(cfg: CausalLMConfig): ParamSpec[] {
  const { d, ffn, vocab, heads, kvHeads } = cfg;
  const headDim = d / heads;
  const std = 0.02;
  // Residual projections scaled down by depth, as GPT-2 does.
  const resid = { kind: 'normal', std: std / Math.sqrt(2 * cfg.layers) } as const;
  const normal = { kind: 'normal', std } as const;
  const specs: ParamSpec[] = [{ name: 'embed', shape: [vocab, d], dtype: 'float32', init: normal }];
  for (let i = 0; i < cfg.layers; i++) {
    const p = `layers.${i}`;
    specs.push(
      { name: `${p}.attn_norm`, shape: [d], dtype: 'float32', init: { kind: 'ones' } },
      { name: `${p}.wq`, shape: [d, heads * headDim], dtype: 'float32', init: normal },
      { name: `${p}.wk`, shape: [d, kvHeads * headDim], dtype: 'float32', init: normal },
      { name: `${p}.wv`, shape: [d, kvHeads * headDim], dtype: 'float32', init: normal },
      { name: `${p}.wo`, shape: [heads * headDim, d], dtype: 'float32', init: resid },
      { name: `${p}.mlp_norm`, shape: [d], dtype: 'float32', init: { kind: 'ones' } },
      { name: `${p}.w_gate`, shape: [d, ffn], dtype: 'float32', init: normal },
      { name: `${p}.w_up`, shape: [d, ffn], dtype: 'float32', init: normal },
      { name: `${p}.w_down`, shape: [ffn, d], dtype: 'float32', init: resid },
    );
  }
  specs.push(
    { name: 'final_norm', shape: [d], dtype: 'float32', init: { kind: 'ones' } },
    { name: 'lm_head', shape: [d, vocab], dtype: 'float32', init: normal },
  );
  return specs;
}

/** Batch inputs of the training step: token ids, next-token labels (-100 = ignore), positions. */
export const CAUSAL_LM_BATCH = [
  { name: 'input_ids', dtype: 'int64', shape: ['batch', 'seq'] },
  { name: 'labels', dtype: 'int64', shape: ['batch', 'seq'] },
  { name: 'positions', dtype: 'int64', shape: ['batch', 'seq'] },
] as const;

/**
 *   input_ids ─ Gather(embed) ─ x (B, T, D)
 *   per layer:  x += attn(rmsNorm(x));  x += w_down(silu(w_gate h) * w_up h), h = rmsNorm(x)
 *   logits = lm_head(rmsNorm(x))  (B, T, V)
 */
export function causalLMLogits(
  g: Graph,
  cfg: CausalLMConfig,
  params: Record<string, Value>,
  batch: { input_ids: Value; positions: Value; mask?: Value },
): Value {
  const headDim = cfg.d / cfg.heads;
  const { cos, sin } = rotaryTables(batch.positions, headDim, cfg.ropeTheta);
  let x = g.scope('embed', () => gather(params.embed!, batch.input_ids)); // (B, T, D)
  const bias = attentionBias(x, batch.mask); // (B|1, 1, 1, T, T), shared by every layer
  for (let i = 0; i < cfg.layers; i++) {
    const p = (n: string) => params[`layers.${i}.${n}`]!;
    x = g.scope(`layers.${i}`, () => {
      const h = rmsNorm(x, p('attn_norm'), { eps: cfg.eps, name: 'attn_norm' });
      const attn = causalSelfAttention(
        h,
        { wq: p('wq'), wk: p('wk'), wv: p('wv'), wo: p('wo') },
        { heads: cfg.heads, kvHeads: cfg.kvHeads, headDim, cos, sin, bias },
      );
      const x1 = add(x, attn, 'residual_attn'); // (B, T, D)
      const h2 = rmsNorm(x1, p('mlp_norm'), { eps: cfg.eps, name: 'mlp_norm' });
      const mlp = g.scope('mlp', () => {
        const gate = silu(linear(h2, p('w_gate'), undefined, { name: 'gate_proj' })); // (B, T, F)
        const up = linear(h2, p('w_up'), undefined, { name: 'up_proj' }); // (B, T, F)
        return linear(mul(gate, up), p('w_down'), undefined, { name: 'down_proj' }); // (B, T, D)
      });
      return add(x1, mlp, 'residual_mlp');
    });
  }
  const normed = rmsNorm(x, params.final_norm!, { eps: cfg.eps, name: 'final_norm' });
  return linear(normed, params.lm_head!, undefined, { name: 'lm_head' }); // (B, T, V)
}

/** Mean next-token cross-entropy over the labels that are not -100. */
export function causalLMLoss(
  g: Graph,
  cfg: CausalLMConfig,
  params: Record<string, Value>,
  batch: Record<string, Value>,
): Value {
  const logits = causalLMLogits(g, cfg, params, {
    input_ids: batch.input_ids!,
    positions: batch.positions!,
  });
  return crossEntropy(logits, batch.labels!);
}

/** Training FLOPs of one token (forward + backward = 3x forward), counting matmuls only. */
export function causalLMTrainFlopsPerToken(cfg: CausalLMConfig, seq: number): number {
  const headDim = cfg.d / cfg.heads;
  const perLayer =
    2 * cfg.d * (cfg.heads + 2 * cfg.kvHeads) * headDim + // q, k, v
    2 * cfg.heads * headDim * cfg.d + // o
    2 * 3 * cfg.d * cfg.ffn + // gate, up, down
    2 * 2 * seq * cfg.heads * headDim; // scores and context (full T x T, as computed)
  return 3 * (cfg.layers * perLayer + 2 * cfg.d * cfg.vocab);
}

/** Fresh weights for every parameter, from one seed. */
export function initCausalLM(cfg: CausalLMConfig, seed: number): Record<string, Float32Array> {
  const rng = new Rng(seed);
  const out: Record<string, Float32Array> = {};
  for (const spec of causalLMParams(cfg)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (spec.init.kind === 'ones') data.fill(1);
    else if (spec.init.kind === 'normal') for (let i = 0; i < n; i++) data[i] = rng.normal() * spec.init.std;
    out[spec.name] = data;
  }
  return out;
}
