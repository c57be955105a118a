import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Rng } from '../../util/rng.ts';
import { type Architecture, type BackboneConfig, HF_NAMES, type Llama3RopeScaling } from '../types.ts';
import { type FloatDType, storedValues, writeSafetensors } from './safetensors-writer.ts';

/**
 * Writes a tiny Hugging Face model directory in the real formats (the default backbone of `npm start`
 * and the fixture of the backbone tests, so the real loading code always runs): config.json, model.safetensors (or shards + model.safetensors.index.json) with seeded random
 * weights, a byte-level BPE tokenizer.json, tokenizer_config.json (ChatML chat_template) and
 * generation_config.json. Nothing here imports the loader: it is the independent side of round trips.
 */

export interface TinyCheckpointOptions {
  architecture: Architecture;
  /** Model vocab (embedding rows); must cover the tokenizer's TINY_TOKENIZER_SIZE ids. */
  vocab?: number;
  hidden?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  /** Written as config head_dim when given (Qwen3 always writes it). */
  headDim?: number;
  intermediate?: number;
  tie?: boolean;
  /** llama3 rope scaling; `true` for typical Llama 3.1 values. */
  ropeScaling?: Llama3RopeScaling | true;
  dtype?: FloatDType;
  shards?: number;
  seed?: number;
}

export interface TinyTensor {
  shape: number[];
  /** The values as stored (after rounding to the checkpoint dtype): what a loader must return. */
  data: Float32Array;
}

export interface TinyCheckpoint {
  dir: string;
  /** The config the loader should produce, built here independently of it. */
  config: BackboneConfig;
  weights: Map<string, TinyTensor>;
  /** Weight files written (shards, in order). */
  files: string[];
  tokens: { endOfText: number; imStart: number; imEnd: number };
}

// ---- tokenizer ---------------------------------------------------------------------------------

/** GPT-2's reversible byte -> printable character map, used by every ByteLevel tokenizer. */
export const BYTE_CHARS: string[] = (() => {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const chars = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) chars[b] = String.fromCharCode(printable.includes(b) ? b : 256 + n++);
  return chars;
})();

const byteText = (piece: string | number[]) =>
  Array.from(typeof piece === 'string' ? new TextEncoder().encode(piece) : piece, (b) => BYTE_CHARS[b]).join(
    '',
  );

// Merges in rank order, as text pieces (or raw bytes, to merge inside a multi-byte character).
// biome-ignore format: a compact table, one merge per pair
const MERGES: [string | number[], string | number[]][] = [
  [' ', 't'], ['h', 'e'], [' t', 'he'], ['i', 'n'], ['o', 'n'], ['e', 'r'], [' ', 'a'], ['a', 'n'],
  [' a', 'n'], [' an', 'd'], ['in', 'g'], [' ', 's'], [' ', 'w'], ['o', 'r'], ['e', 's'], ['l', 'l'],
  ['H', 'e'], ['He', 'll'], ['Hell', 'o'], [' ', 'W'], [' W', 'or'], [' Wor', 'l'], [' Worl', 'd'],
  ['\n', '\n'], [' ', 'i'], [' i', 's'], ['a', 't'], ['r', 'e'], [' ', 'c'], [' ', 'o'], [' o', 'f'],
  ['u', 's'], ['us', 'er'], ['s', 'y'], ['sy', 's'], ['s', 't'], ['sys', 't'], ['e', 'm'], ['syst', 'em'],
  ['a', 's'], ['as', 's'], ['ass', 'i'], ['assi', 'st'], ['assist', 'an'], ['assistan', 't'],
  [[0xc3], [0xa9]], // é
  [[0xe2], [0x82]], // the first two bytes of €: a token that ends inside a character
];

const SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] as const;
/** Ids 0-255 are bytes, then merges, then the special tokens. */
export const TINY_TOKENIZER_SIZE = 256 + MERGES.length + SPECIALS.length;

export const CHATML_TEMPLATE =
  "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/** tokenizer.json in the schema the HF `tokenizers` library writes (ByteLevel BPE, like Qwen2's). */
export function tinyTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  BYTE_CHARS.forEach((c, b) => {
    vocab[c] = b;
  });
  const merges: [string, string][] = [];
  for (const [a, b] of MERGES) {
    const left = byteText(a);
    const right = byteText(b);
    if (!(left in vocab) || !(right in vocab))
      throw new Error(`tiny tokenizer: merge ${left} ${right} uses an unknown token`);
    merges.push([left, right]);
    vocab[left + right] = Object.keys(vocab).length;
  }
  const firstSpecial = Object.keys(vocab).length;
  const added_tokens = SPECIALS.map((content, i) => ({
    id: firstSpecial + i,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, use_regex: false },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

// ---- weights -----------------------------------------------------------------------------------

function buildConfig(o: TinyCheckpointOptions): BackboneConfig {
  const hidden = o.hidden ?? 64;
  const heads = o.heads ?? 4;
  const qwen = o.architecture !== 'llama';
  const scaling: Llama3RopeScaling | undefined =
    o.ropeScaling === true
      ? { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 256 }
      : o.ropeScaling;
  const config: BackboneConfig = {
    architecture: o.architecture,
    vocabSize: o.vocab ?? 320,
    hiddenSize: hidden,
    layers: o.layers ?? 2,
    heads,
    kvHeads: o.kvHeads ?? 2,
    headDim: o.headDim ?? hidden / heads,
    intermediateSize: o.intermediate ?? 128,
    rmsNormEps: qwen ? 1e-6 : 1e-5,
    ropeTheta: qwen ? 1_000_000 : 500_000,
    maxPositions: 1024,
    tieWordEmbeddings: o.tie ?? false,
    qkvBias: o.architecture === 'qwen2',
    qkNorm: o.architecture === 'qwen3',
  };
  if (scaling) config.ropeScaling = scaling;
  if (config.vocabSize < TINY_TOKENIZER_SIZE) {
    throw new Error(
      `tiny checkpoint: vocab ${config.vocabSize} must cover the tokenizer's ${TINY_TOKENIZER_SIZE} ids`,
    );
  }
  if (!Number.isInteger(config.headDim) || config.heads % config.kvHeads !== 0) {
    throw new Error(
      `tiny checkpoint: heads ${heads} / kvHeads ${config.kvHeads} / headDim ${config.headDim} do not fit`,
    );
  }
  return config;
}

/** Every parameter, in HF order, with its shape and how it is initialised. */
function parameterList(
  c: BackboneConfig,
): { name: string; shape: number[]; kind: 'weight' | 'norm' | 'bias' }[] {
  const { vocabSize: V, hiddenSize: d, heads: H, kvHeads: Hkv, headDim: dh, intermediateSize: ff } = c;
  const list: { name: string; shape: number[]; kind: 'weight' | 'norm' | 'bias' }[] = [];
  list.push({ name: HF_NAMES.embed, shape: [V, d], kind: 'weight' });
  for (let i = 0; i < c.layers; i++) {
    const n = HF_NAMES.layer(i);
    list.push({ name: n.inputNorm, shape: [d], kind: 'norm' });
    list.push({ name: n.q, shape: [H * dh, d], kind: 'weight' });
    if (c.qkvBias) list.push({ name: n.qBias, shape: [H * dh], kind: 'bias' });
    list.push({ name: n.k, shape: [Hkv * dh, d], kind: 'weight' });
    if (c.qkvBias) list.push({ name: n.kBias, shape: [Hkv * dh], kind: 'bias' });
    list.push({ name: n.v, shape: [Hkv * dh, d], kind: 'weight' });
    if (c.qkvBias) list.push({ name: n.vBias, shape: [Hkv * dh], kind: 'bias' });
    if (c.qkNorm) {
      list.push({ name: n.qNorm, shape: [dh], kind: 'norm' });
      list.push({ name: n.kNorm, shape: [dh], kind: 'norm' });
    }
    list.push({ name: n.o, shape: [d, H * dh], kind: 'weight' });
    list.push({ name: n.postAttnNorm, shape: [d], kind: 'norm' });
    list.push({ name: n.gate, shape: [ff, d], kind: 'weight' });
    list.push({ name: n.up, shape: [ff, d], kind: 'weight' });
    list.push({ name: n.down, shape: [d, ff], kind: 'weight' });
  }
  list.push({ name: HF_NAMES.finalNorm, shape: [d], kind: 'norm' });
  if (!c.tieWordEmbeddings) list.push({ name: HF_NAMES.lmHead, shape: [V, d], kind: 'weight' });
  return list;
}

function configJson(
  c: BackboneConfig,
  o: TinyCheckpointOptions,
  dtype: FloatDType,
  tokens: TinyCheckpoint['tokens'],
) {
  const arch = { llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM' }[
    c.architecture
  ];
  const json: Record<string, unknown> = {
    architectures: [arch],
    model_type: c.architecture,
    attention_dropout: 0,
    bos_token_id: tokens.endOfText,
    eos_token_id: tokens.imEnd,
    hidden_act: 'silu',
    hidden_size: c.hiddenSize,
    initializer_range: 0.02,
    intermediate_size: c.intermediateSize,
    max_position_embeddings: c.maxPositions,
    num_attention_heads: c.heads,
    num_hidden_layers: c.layers,
    num_key_value_heads: c.kvHeads,
    rms_norm_eps: c.rmsNormEps,
    rope_scaling: c.ropeScaling
      ? {
          rope_type: 'llama3',
          factor: c.ropeScaling.factor,
          low_freq_factor: c.ropeScaling.lowFreqFactor,
          high_freq_factor: c.ropeScaling.highFreqFactor,
          original_max_position_embeddings: c.ropeScaling.originalMaxPositions,
        }
      : null,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tieWordEmbeddings,
    torch_dtype: { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype],
    transformers_version: '4.51.0',
    use_cache: true,
    vocab_size: c.vocabSize,
  };
  if (c.architecture === 'llama')
    Object.assign(json, { attention_bias: false, mlp_bias: false, pretraining_tp: 1 });
  if (c.architecture !== 'llama') {
    Object.assign(json, {
      use_sliding_window: false,
      sliding_window: c.maxPositions,
      max_window_layers: c.layers,
    });
  }
  if (c.architecture === 'qwen3') json.attention_bias = false;
  if (o.headDim !== undefined || c.architecture === 'qwen3') json.head_dim = c.headDim;
  return json;
}

export async function writeTinyCheckpoint(
  dir: string,
  options: TinyCheckpointOptions,
): Promise<TinyCheckpoint> {
  const config = buildConfig(options);
  const dtype = options.dtype ?? 'F32';
  const firstSpecial = 256 + MERGES.length;
  const tokens = { endOfText: firstSpecial, imStart: firstSpecial + 1, imEnd: firstSpecial + 2 };
  await mkdir(dir, { recursive: true });

  const rng = new Rng(options.seed ?? 0);
  const params = parameterList(config);
  const weights = new Map<string, TinyTensor>();
  for (const p of params) {
    const values = new Float32Array(p.shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < values.length; i++) values[i] = (p.kind === 'norm' ? 1 : 0) + 0.05 * rng.normal();
    weights.set(p.name, { shape: p.shape, data: storedValues(dtype, values) });
  }

  const shards = options.shards ?? 1;
  if (!Number.isInteger(shards) || shards < 1 || shards > params.length) {
    throw new Error(`tiny checkpoint: shards must be 1..${params.length}`);
  }
  const files: string[] = [];
  if (shards === 1) {
    await writeSafetensors(join(dir, 'model.safetensors'), tensorsOf(params, weights, dtype));
    files.push('model.safetensors');
  } else {
    const weightMap: Record<string, string> = {};
    let totalSize = 0;
    for (let s = 0; s < shards; s++) {
      const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const group = params.filter((_, i) => Math.floor((i * shards) / params.length) === s);
      for (const p of group) {
        weightMap[p.name] = file;
        totalSize += weights.get(p.name)!.data.length * (dtype === 'F32' ? 4 : 2);
      }
      await writeSafetensors(join(dir, file), tensorsOf(group, weights, dtype));
      files.push(file);
    }
    const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify(index, null, 2));
  }

  await writeJson(join(dir, 'config.json'), configJson(config, options, dtype, tokens));
  await writeJson(join(dir, 'tokenizer.json'), tinyTokenizerJson());
  await writeJson(join(dir, 'tokenizer_config.json'), tinyTokenizerConfig(tokens));
  await writeJson(join(dir, 'generation_config.json'), {
    bos_token_id: tokens.endOfText,
    eos_token_id: [tokens.imEnd, tokens.endOfText],
    pad_token_id: tokens.endOfText,
    do_sample: false,
    transformers_version: '4.51.0',
  });
  return { dir, config, weights, files, tokens };
}

function tinyTokenizerConfig(tokens: TinyCheckpoint['tokens']): Record<string, unknown> {
  const added = (content: string) => ({
    content,
    lstrip: false,
    normalized: false,
    rstrip: false,
    single_word: false,
    special: true,
  });
  return {
    add_bos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: {
      [tokens.endOfText]: added('<|endoftext|>'),
      [tokens.imStart]: added('<|im_start|>'),
      [tokens.imEnd]: added('<|im_end|>'),
    },
    additional_special_tokens: ['<|im_start|>', '<|im_end|>'],
    bos_token: null,
    chat_template: CHATML_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: '<|im_end|>',
    errors: 'replace',
    model_max_length: 1024,
    pad_token: '<|endoftext|>',
    split_special_tokens: false,
    tokenizer_class: 'Qwen2Tokenizer',
    unk_token: null,
  };
}

function tensorsOf(params: { name: string }[], weights: Map<string, TinyTensor>, dtype: FloatDType) {
  return Object.fromEntries(params.map((p) => [p.name, { dtype, ...weights.get(p.name)! }]));
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}
