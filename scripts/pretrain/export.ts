import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeSafetensors } from '../../gpu-worker/src/backbone/dev/safetensors-writer.ts';
import { HF_NAMES } from '../../gpu-worker/src/backbone/types.ts';
import {
  buildTrainStep,
  CAUSAL_LM_BATCH,
  causalLMLoss,
  causalLMParams,
} from '../../gpu-worker/src/graph/index.ts';
import { SPECIAL_TOKENS } from './bpe.ts';
import type { TokenData } from './data.ts';
import type { Recipe } from './recipe.ts';
import { loadCheckpoint } from './train.ts';

/** The committed model directory, loaded by the same code as any Hugging Face checkpoint. */
export const MODEL_DIR = join(import.meta.dirname, '..', '..', 'models', 'ladder-base');

function specialId(data: TokenData, content: string): number {
  const added = (data.tokenizer.added_tokens as { id: number; content: string }[]).find(
    (t) => t.content === content,
  );
  if (!added) throw new Error(`export: the tokenizer has no ${content}`);
  return added.id;
}

/** (rows, cols) row-major -> (cols, rows): the engine keeps x @ W weights, HF keeps W as (out, in). */
function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

/** Engine parameters -> HF Llama tensors (names and layouts of LlamaForCausalLM). */
export function hfTensors(recipe: Recipe, params: Record<string, Float32Array>) {
  const { d, ffn, vocab, heads, kvHeads, layers } = recipe.model;
  const dh = d / heads;
  const t: Record<string, { dtype: 'F16'; shape: number[]; data: Float32Array }> = {};
  const put = (name: string, shape: number[], data: Float32Array) => {
    t[name] = { dtype: 'F16', shape, data };
  };
  put(HF_NAMES.embed, [vocab, d], params.embed!);
  for (let i = 0; i < layers; i++) {
    const n = HF_NAMES.layer(i);
    const p = (k: string) => params[`layers.${i}.${k}`]!;
    put(n.inputNorm, [d], p('attn_norm'));
    put(n.q, [heads * dh, d], transpose(p('wq'), d, heads * dh));
    put(n.k, [kvHeads * dh, d], transpose(p('wk'), d, kvHeads * dh));
    put(n.v, [kvHeads * dh, d], transpose(p('wv'), d, kvHeads * dh));
    put(n.o, [d, heads * dh], transpose(p('wo'), heads * dh, d));
    put(n.postAttnNorm, [d], p('mlp_norm'));
    put(n.gate, [ffn, d], transpose(p('w_gate'), d, ffn));
    put(n.up, [ffn, d], transpose(p('w_up'), d, ffn));
    put(n.down, [d, ffn], transpose(p('w_down'), ffn, d));
  }
  put(HF_NAMES.finalNorm, [d], params.final_norm!);
  put(HF_NAMES.lmHead, [vocab, d], transpose(params.lm_head!, d, vocab));
  return t;
}

export function hfConfig(recipe: Recipe, data: TokenData): Record<string, unknown> {
  const m = recipe.model;
  const base = specialId(data, SPECIAL_TOKENS[0]);
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    attention_bias: false,
    attention_dropout: 0,
    bos_token_id: base,
    eos_token_id: specialId(data, '<|im_end|>'),
    head_dim: m.d / m.heads,
    hidden_act: 'silu',
    hidden_size: m.d,
    initializer_range: 0.02,
    intermediate_size: m.ffn,
    max_position_embeddings: recipe.seq,
    mlp_bias: false,
    num_attention_heads: m.heads,
    num_hidden_layers: m.layers,
    num_key_value_heads: m.kvHeads,
    pretraining_tp: 1,
    rms_norm_eps: m.eps,
    rope_scaling: null,
    rope_theta: m.ropeTheta,
    tie_word_embeddings: false,
    torch_dtype: 'float16',
    transformers_version: '4.51.0',
    use_cache: true,
    vocab_size: m.vocab,
    ladder_tokenizer_sha256: data.tokenizerHash,
  };
}

/** Write models/ladder-base from the finished run's checkpoint (its README is kept by hand). */
export async function exportModel(
  workDir: string,
  data: TokenData,
  recipe: Recipe,
  opts: { outDir?: string; allowUnfinished?: boolean } = {},
) {
  const outDir = opts.outDir ?? MODEL_DIR;
  const specs = causalLMParams(recipe.model);
  const { layout } = buildTrainStep({
    params: specs.map(({ name, shape }) => ({ name, shape })),
    batch: CAUSAL_LM_BATCH.map((b) => ({ ...b, shape: [...b.shape] })),
    loss: (g, params, batch) => causalLMLoss(g, recipe.model, params, batch),
  });
  const ckpt = await loadCheckpoint(workDir, layout, data.tokenizerHash);
  if (!ckpt) throw new Error(`export: no checkpoint in ${workDir} (run npm run pretrain first)`);
  if (ckpt.step < recipe.steps && !opts.allowUnfinished) {
    throw new Error(
      `export: the checkpoint is at step ${ckpt.step} of ${recipe.steps}; finish the run first`,
    );
  }
  const params = Object.fromEntries(specs.map((s) => [s.name, ckpt.state[s.name]!]));
  await mkdir(outDir, { recursive: true });
  const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
  await writeSafetensors(join(outDir, 'model.safetensors'), hfTensors(recipe, params));
  await writeFile(join(outDir, 'config.json'), json(hfConfig(recipe, data)));
  await writeFile(join(outDir, 'tokenizer.json'), JSON.stringify(data.tokenizer));
  await writeFile(join(outDir, 'tokenizer_config.json'), json(data.tokenizerConfig));
  const eot = specialId(data, '<|endoftext|>');
  const eos = specialId(data, '<|im_end|>');
  await writeFile(
    join(outDir, 'generation_config.json'),
    json({ bos_token_id: eot, eos_token_id: [eos, eot], pad_token_id: eot, do_sample: false }),
  );
  console.error(`export: step ${ckpt.step} -> ${outDir}`);
}
