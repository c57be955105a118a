import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CheckpointError,
  checkpointFingerprint,
  expectTensors,
  loadConfig,
  openCheckpoint,
  parseConfig,
} from '../../../gpu-worker/src/backbone/checkpoint/index.ts';
import { HF_NAMES } from '../../../gpu-worker/src/backbone/types.ts';
import { safetensorsBytes, writeSafetensors } from '../../helpers/safetensors-writer.ts';
import { type TinyCheckpointOptions, writeTinyCheckpoint } from '../../helpers/tiny-checkpoint.ts';

let root: string;
let n = 0;
const fresh = () => join(root, `c${n++}`);
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ladder-checkpoint-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Expects `fn` to throw a CheckpointError whose message matches every pattern. */
async function expectRefusal(
  fn: () => Promise<unknown> | unknown,
  ...patterns: RegExp[]
): Promise<CheckpointError> {
  let error: unknown;
  try {
    await fn();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(CheckpointError);
  for (const p of patterns) expect((error as Error).message).toMatch(p);
  return error as CheckpointError;
}

// A Llama-3.1-8B-shaped config.json as published (trimmed to the fields that matter).
const LLAMA_31 = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  hidden_act: 'silu',
  hidden_size: 4096,
  intermediate_size: 14336,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    factor: 8.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_max_position_embeddings: 8192,
    rope_type: 'llama3',
  },
  rope_theta: 500000.0,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  vocab_size: 128256,
};

// A Qwen2.5-0.5B-shaped config.json: tied embeddings, sliding window configured but off.
const QWEN25 = {
  architectures: ['Qwen2ForCausalLM'],
  hidden_act: 'silu',
  hidden_size: 896,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 21,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

describe('loadConfig', () => {
  it.each<TinyCheckpointOptions>([
    { architecture: 'llama', heads: 4, kvHeads: 2, tie: true, ropeScaling: true },
    { architecture: 'qwen2', heads: 4, kvHeads: 1 },
    { architecture: 'qwen3', hidden: 64, heads: 4, kvHeads: 2, headDim: 32, tie: true },
  ])('parses a written $architecture config', async (options) => {
    const tiny = await writeTinyCheckpoint(fresh(), options);
    expect(await loadConfig(tiny.dir)).toEqual(tiny.config);
  });

  it('normalises published Llama 3.1 and Qwen2.5 configs', () => {
    expect(parseConfig(LLAMA_31)).toEqual({
      architecture: 'llama',
      vocabSize: 128256,
      hiddenSize: 4096,
      layers: 32,
      heads: 32,
      kvHeads: 8,
      headDim: 128,
      intermediateSize: 14336,
      rmsNormEps: 1e-5,
      ropeTheta: 500000,
      ropeScaling: {
        type: 'llama3',
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositions: 8192,
      },
      maxPositions: 131072,
      tieWordEmbeddings: false,
      qkvBias: false,
      qkNorm: false,
    });
    const qwen = parseConfig(QWEN25);
    expect(qwen).toMatchObject({
      architecture: 'qwen2',
      headDim: 64,
      kvHeads: 2,
      tieWordEmbeddings: true,
      qkvBias: true,
    });
    expect(qwen.ropeScaling).toBeUndefined();
  });

  it('accepts the legacy rope_scaling "type" key, "default" scaling and transformers v5 rope_parameters', () => {
    const { rope_type: _, ...legacy } = LLAMA_31.rope_scaling;
    expect(
      parseConfig({ ...LLAMA_31, rope_scaling: { ...legacy, type: 'llama3' } }).ropeScaling?.factor,
    ).toBe(8);
    expect(parseConfig({ ...LLAMA_31, rope_scaling: { rope_type: 'default' } }).ropeScaling).toBeUndefined();
    const { rope_scaling, rope_theta, ...rest } = LLAMA_31;
    const v5 = parseConfig({ ...rest, rope_parameters: { ...rope_scaling, rope_theta: 123 } });
    expect(v5.ropeTheta).toBe(123);
    expect(v5.ropeScaling?.originalMaxPositions).toBe(8192);
  });

  it('defaults num_key_value_heads to num_attention_heads (no GQA)', () => {
    const { num_key_value_heads: _, ...mha } = LLAMA_31;
    expect(parseConfig(mha).kvHeads).toBe(32);
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    [
      'another architecture',
      { architectures: ['MistralForCausalLM'] },
      /config\.json: architectures\[0\] 'MistralForCausalLM' is not supported \(supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM\)/,
    ],
    [
      'yarn rope scaling',
      { rope_scaling: { rope_type: 'yarn', factor: 4 } },
      /config\.json: rope_scaling\.rope_type 'yarn' is not supported/,
    ],
    [
      'linear rope scaling (legacy key)',
      { rope_scaling: { type: 'linear', factor: 2 } },
      /config\.json: rope_scaling\.type 'linear'/,
    ],
    [
      'llama3 scaling without factor',
      {
        rope_scaling: {
          rope_type: 'llama3',
          low_freq_factor: 1,
          high_freq_factor: 4,
          original_max_position_embeddings: 8192,
        },
      },
      /config\.json: rope_scaling\.factor is missing/,
    ],
    [
      'sliding window',
      { use_sliding_window: true },
      /config\.json: use_sliding_window true is not supported/,
    ],
    [
      'sliding layers',
      { layer_types: ['full_attention', 'sliding_attention'] },
      /config\.json: layer_types\[1\] 'sliding_attention'/,
    ],
    ['another activation', { hidden_act: 'gelu' }, /config\.json: hidden_act 'gelu' is not supported/],
    [
      'kv heads that do not divide heads',
      { num_key_value_heads: 3 },
      /config\.json: num_key_value_heads 3 does not divide num_attention_heads 32/,
    ],
    [
      'attention biases on Llama',
      { attention_bias: true },
      /config\.json: attention_bias true is not supported/,
    ],
    [
      'a quantized checkpoint',
      { quantization_config: { quant_method: 'gptq' } },
      /config\.json: quantization_config \(gptq\)/,
    ],
    ['a non-number size', { vocab_size: 'big' }, /config\.json: vocab_size is invalid: "big"/],
    ['a missing size', { hidden_size: undefined }, /config\.json: hidden_size is missing/],
  ])('refuses %s, naming the field', async (_, change, pattern) => {
    const json = { ...LLAMA_31, ...change };
    const e = await expectRefusal(() => parseConfig(json, '/models/x/config.json'), pattern);
    expect(e.file).toBe('/models/x/config.json');
  });

  it('reports every refused field at once', async () => {
    const e = await expectRefusal(
      () => parseConfig({ ...LLAMA_31, hidden_act: 'relu', use_sliding_window: true }),
      /hidden_act/,
      /use_sliding_window/,
    );
    expect(e.problems.map((p) => p.field)).toEqual(['hidden_act', 'use_sliding_window']);
  });

  it('names config.json when it is missing or not JSON', async () => {
    const dir = fresh();
    await expectRefusal(() => loadConfig(dir), /config\.json: file cannot be read/);
    const tiny = await writeTinyCheckpoint(dir, { architecture: 'llama' });
    await writeFile(join(tiny.dir, 'config.json'), '{"architectures": [');
    await expectRefusal(() => loadConfig(tiny.dir), /config\.json: content is not valid JSON/);
  });
});

describe('openCheckpoint round trip', () => {
  // Rounding a float32 to nearest even gives at most half an ulp: relative error 2^-11 (f16), 2^-8 (bf16),
  // plus half the smallest subnormal for f16 values below its normal range.
  const TOLERANCE = {
    F32: { rel: 0, abs: 0 },
    F16: { rel: 2 ** -11, abs: 2 ** -25 },
    BF16: { rel: 2 ** -8, abs: 0 },
  };
  let originals: Awaited<ReturnType<typeof writeTinyCheckpoint>>;
  beforeAll(async () => {
    originals = await writeTinyCheckpoint(fresh(), { architecture: 'qwen2', seed: 7 });
  });

  it.each([
    { dtype: 'F32', shards: 1 },
    { dtype: 'F16', shards: 1 },
    { dtype: 'BF16', shards: 1 },
    { dtype: 'F32', shards: 3 },
    { dtype: 'BF16', shards: 4 },
  ] as const)('reads $dtype in $shards file(s) back as float32', async ({ dtype, shards }) => {
    const tiny = await writeTinyCheckpoint(fresh(), { architecture: 'qwen2', seed: 7, dtype, shards });
    expect(tiny.files).toHaveLength(shards);
    const source = await openCheckpoint(tiny.dir);
    try {
      expect([...source.tensors.keys()].sort()).toEqual([...tiny.weights.keys()].sort());
      expectTensors(source, await loadConfig(tiny.dir));
      const tol = TOLERANCE[dtype];
      let worst = 0;
      for (const [name, w] of tiny.weights) {
        const info = source.tensors.get(name)!;
        expect(info.dtype).toBe(dtype);
        expect(info.shape).toEqual(w.shape);
        const got = await source.read(name);
        expect(got).toEqual(w.data); // the values the file stores, bit for bit
        const x0 = originals.weights.get(name)!.data; // the float32 values before rounding
        const outside: string[] = [];
        for (let i = 0; i < got.length; i++) {
          const err = Math.abs(got[i]! - x0[i]!);
          if (err > tol.rel * Math.abs(x0[i]!) + tol.abs)
            outside.push(`${name}[${i}]: ${got[i]} vs ${x0[i]}`);
          worst = Math.max(worst, err);
        }
        expect(outside).toEqual([]);
      }
      if (dtype !== 'F32') expect(worst).toBeGreaterThan(0); // the rounding really happened
    } finally {
      await source.close();
    }
  });

  it('names the shard that holds each tensor', async () => {
    const tiny = await writeTinyCheckpoint(fresh(), { architecture: 'llama', shards: 2 });
    const source = await openCheckpoint(tiny.dir);
    expect(source.origin).toMatch(/model\.safetensors\.index\.json$/);
    expect(source.tensors.get(HF_NAMES.embed)!.file).toMatch(/model-00001-of-00002\.safetensors$/);
    expect(source.tensors.get(HF_NAMES.lmHead)!.file).toMatch(/model-00002-of-00002\.safetensors$/);
    await source.close();
  });

  it('widens known F16 and BF16 bit patterns exactly', async () => {
    const dir = fresh();
    const f16 = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00, 0x3555, 0x0400];
    const f16Want = [1, -2, 65504, 2 ** -24, -0, Number.POSITIVE_INFINITY, 0.333251953125, 2 ** -14];
    const bf16 = [0x3f80, 0xc0a0, 0x3e4d, 0xff80, 0x0001];
    const bf16Want = [1, -5, 0.2001953125, Number.NEGATIVE_INFINITY, 2 ** -133];
    await writeTinyCheckpoint(dir, { architecture: 'llama' });
    await writeSafetensors(join(dir, 'model.safetensors'), {
      h: { dtype: 'F16', shape: [2, 4], data: new Uint8Array(new Uint16Array(f16).buffer) },
      b: { dtype: 'BF16', shape: [5], data: new Uint8Array(new Uint16Array(bf16).buffer) },
    });
    const source = await openCheckpoint(dir);
    expect(Array.from(await source.read('h'))).toEqual(f16Want);
    expect(Array.from(await source.read('b'))).toEqual(bf16Want);
    expect(Object.is((await source.read('h'))[4], -0)).toBe(true);
    await source.close();
  });

  it('gives the same values whatever the read chunk size', async () => {
    for (const dtype of ['F32', 'BF16', 'F16'] as const) {
      const tiny = await writeTinyCheckpoint(fresh(), { architecture: 'llama', dtype, seed: 3 });
      const d = tiny.config.hiddenSize;
      // Two elements per read (the smallest chunk): small tensors only, it is one read call per pair.
      const tinyChunks = await openCheckpoint(tiny.dir, { chunkBytes: 1 });
      expect(await tinyChunks.read(HF_NAMES.finalNorm)).toEqual(tiny.weights.get(HF_NAMES.finalNorm)!.data);
      expect(await tinyChunks.readRows(HF_NAMES.embed, 3, 2)).toEqual(
        tiny.weights.get(HF_NAMES.embed)!.data.subarray(3 * d, 5 * d),
      );
      await tinyChunks.close();
      // 1000 bytes: chunk boundaries that fall mid-row and mid-tensor.
      const source = await openCheckpoint(tiny.dir, { chunkBytes: 1000 });
      for (const name of [HF_NAMES.embed, HF_NAMES.layer(1).down, HF_NAMES.finalNorm]) {
        expect(await source.read(name)).toEqual(tiny.weights.get(name)!.data);
      }
      await source.close();
    }
  });

  it('reads a range of rows', async () => {
    const tiny = await writeTinyCheckpoint(fresh(), { architecture: 'llama', dtype: 'BF16' });
    const source = await openCheckpoint(tiny.dir, { chunkBytes: 100 });
    const d = tiny.config.hiddenSize;
    const embed = tiny.weights.get(HF_NAMES.embed)!.data;
    expect(await source.readRows(HF_NAMES.embed, 5, 3)).toEqual(embed.subarray(5 * d, 8 * d));
    await expect(source.readRows(HF_NAMES.embed, 319, 2)).rejects.toThrow(
      /rows \[319, 321\) are outside \[0, 320\)/,
    );
    await source.close();
  });

  it('names the tensor it does not have, and refuses reads after close', async () => {
    const tiny = await writeTinyCheckpoint(fresh(), { architecture: 'llama' });
    const source = await openCheckpoint(tiny.dir);
    await expectRefusal(
      () => source.read('model.nope.weight'),
      /model\.safetensors: tensor 'model\.nope\.weight' is not in the checkpoint/,
    );
    await source.close();
    await expect(source.read(HF_NAMES.embed)).rejects.toThrow(/closed/);
  });
});

describe('checkpointFingerprint', () => {
  it('depends on the config and every weight byte, not on where the directory is', async () => {
    const a = await writeTinyCheckpoint(fresh(), { architecture: 'qwen3', shards: 2, seed: 1 });
    const b = await writeTinyCheckpoint(fresh(), { architecture: 'qwen3', shards: 2, seed: 1 });
    const fa = await checkpointFingerprint(a.dir);
    expect(fa).toMatch(/^[0-9a-f]{64}$/);
    expect(await checkpointFingerprint(b.dir)).toBe(fa);

    const shard = join(b.dir, b.files[1]!);
    const bytes = await readFile(shard);
    bytes[bytes.length - 1]! ^= 1; // one bit of the last tensor
    await writeFile(shard, bytes);
    const flipped = await checkpointFingerprint(b.dir);
    expect(flipped).not.toBe(fa);

    const config = JSON.parse(await readFile(join(a.dir, 'config.json'), 'utf8'));
    await writeFile(join(a.dir, 'config.json'), JSON.stringify({ ...config, rms_norm_eps: 1e-5 }));
    const reconfigured = await checkpointFingerprint(a.dir);
    expect(reconfigured).not.toBe(fa);
    expect(reconfigured).not.toBe(flipped);

    // Tokenizer files do not enter the key.
    await writeFile(join(a.dir, 'tokenizer_config.json'), '{}');
    expect(await checkpointFingerprint(a.dir)).toBe(reconfigured);
  });

  it('differs between one file and the same weights in shards', async () => {
    const one = await writeTinyCheckpoint(fresh(), { architecture: 'llama', seed: 2 });
    const two = await writeTinyCheckpoint(fresh(), { architecture: 'llama', seed: 2, shards: 2 });
    expect(await checkpointFingerprint(one.dir)).not.toBe(await checkpointFingerprint(two.dir));
  });
});

describe('expectTensors', () => {
  it('reports every missing and misshapen tensor at once, naming file and tensor', async () => {
    const tiny = await writeTinyCheckpoint(fresh(), { architecture: 'llama' });
    const tensors = Object.fromEntries([...tiny.weights].map(([name, w]) => [name, { dtype: 'F32', ...w }]));
    delete tensors[HF_NAMES.layer(1).up];
    delete tensors[HF_NAMES.lmHead];
    const q0 = HF_NAMES.layer(0).q;
    tensors[q0] = { dtype: 'F32', shape: [32, 64], data: new Float32Array(32 * 64) };
    await writeSafetensors(join(tiny.dir, 'model.safetensors'), tensors);
    const source = await openCheckpoint(tiny.dir);
    const e = await expectRefusal(
      () => expectTensors(source, tiny.config),
      /model\.safetensors: 3 tensor\(s\) do not match the config/,
      /model\.safetensors: tensor 'model\.layers\.1\.mlp\.up_proj\.weight' is missing \(expected shape \[128, 64\]\)/,
      /model\.safetensors: tensor 'lm_head\.weight' is missing/,
      /model\.safetensors: tensor 'model\.layers\.0\.self_attn\.q_proj\.weight' has shape \[32, 64\], expected \[64, 64\]/,
    );
    expect(e.problems).toHaveLength(3);
    await source.close();
  });

  it('needs no lm_head when embeddings are tied', async () => {
    const tiny = await writeTinyCheckpoint(fresh(), { architecture: 'qwen2', tie: true });
    expect(tiny.weights.has(HF_NAMES.lmHead)).toBe(false);
    const source = await openCheckpoint(tiny.dir);
    expect(() => expectTensors(source, tiny.config)).not.toThrow();
    await expectRefusal(
      () => expectTensors(source, { ...tiny.config, tieWordEmbeddings: false }),
      /tensor 'lm_head\.weight' is missing/,
    );
    await source.close();
  });

  it('checks the family extras: Qwen2 qkv biases, Qwen3 q/k norms (head_dim sized)', async () => {
    const qwen2 = await writeTinyCheckpoint(fresh(), { architecture: 'qwen2', layers: 2 });
    const llamaShaped = { ...qwen2.config, qkvBias: false };
    const src2 = await openCheckpoint(qwen2.dir);
    expect(() => expectTensors(src2, llamaShaped)).not.toThrow(); // extra tensors are ignored
    await src2.close();

    const llama = await writeTinyCheckpoint(fresh(), { architecture: 'llama', layers: 2 });
    const src = await openCheckpoint(llama.dir);
    const e = await expectRefusal(() => expectTensors(src, { ...llama.config, qkvBias: true, qkNorm: true }));
    expect(e.problems.map((p) => p.field)).toEqual(
      [0, 1].flatMap((i) => {
        const l = HF_NAMES.layer(i);
        return [l.qBias, l.kBias, l.vBias, l.qNorm, l.kNorm].map((t) => `tensor '${t}'`);
      }),
    );
    await src.close();

    const qwen3 = await writeTinyCheckpoint(fresh(), { architecture: 'qwen3', headDim: 32 });
    const src3 = await openCheckpoint(qwen3.dir);
    expect(src3.tensors.get(HF_NAMES.layer(0).qNorm)!.shape).toEqual([32]);
    expect(src3.tensors.get(HF_NAMES.layer(0).q)!.shape).toEqual([4 * 32, 64]);
    expect(() => expectTensors(src3, qwen3.config)).not.toThrow();
    await src3.close();
  });
});

describe('openCheckpoint refuses bad files, naming the file and the field', () => {
  const data16 = new Uint8Array(16);
  async function dirWith(bytes: Uint8Array): Promise<string> {
    const dir = fresh();
    await writeTinyCheckpoint(dir, { architecture: 'llama' });
    await writeFile(join(dir, 'model.safetensors'), bytes);
    return dir;
  }
  const entry = (begin: number, end: number, shape = [2, 2]) => ({
    dtype: 'F32',
    shape,
    data_offsets: [begin, end],
  });

  it('a truncated data section', async () => {
    const tiny = await writeTinyCheckpoint(fresh(), { architecture: 'llama' });
    const file = join(tiny.dir, 'model.safetensors');
    const bytes = await readFile(file);
    await truncate(file, bytes.length - 10);
    await expectRefusal(
      () => openCheckpoint(tiny.dir),
      /model\.safetensors: tensor 'lm_head\.weight' data_offsets \[\d+, \d+\] are out of range of the \d+-byte data section \(truncated file\?\)/,
    );
  });

  it('a file cut inside its header', async () => {
    const tiny = await writeTinyCheckpoint(fresh(), { architecture: 'llama' });
    await truncate(join(tiny.dir, 'model.safetensors'), 100);
    await expectRefusal(
      () => openCheckpoint(tiny.dir),
      /model\.safetensors: header length \d+ is out of range \(file is 100 bytes/,
    );
    await truncate(join(tiny.dir, 'model.safetensors'), 5);
    await expectRefusal(
      () => openCheckpoint(tiny.dir),
      /model\.safetensors: header length needs 8 bytes but the file has 5/,
    );
  });

  it.each<[string, Uint8Array, RegExp]>([
    [
      'bad JSON',
      safetensorsBytes('{"a": {"dtype": "F32",', data16),
      /model\.safetensors: header is not UTF-8 JSON/,
    ],
    [
      'a JSON array',
      safetensorsBytes('[1, 2, 3]       ', data16),
      /model\.safetensors: header is not a JSON object/,
    ],
    [
      'a huge header length',
      safetensorsBytes({ a: entry(0, 16) }, data16, { headerLength: 1n << 40n }),
      /model\.safetensors: header length 1099511627776 is out of range/,
    ],
    [
      'offsets out of range',
      safetensorsBytes({ a: entry(0, 16), b: entry(16, 32) }, data16),
      /model\.safetensors: tensor 'b' data_offsets \[16, 32\] are out of range of the 16-byte data section/,
    ],
    [
      'overlapping tensors',
      safetensorsBytes({ a: entry(0, 16), b: entry(8, 24) }, new Uint8Array(24)),
      /model\.safetensors: tensor 'b' data_offsets \[8, 24\] overlap tensor 'a' \(which ends at 16\)/,
    ],
    [
      'a hole between tensors',
      safetensorsBytes({ a: entry(0, 16), b: entry(20, 36) }, new Uint8Array(36)),
      /model\.safetensors: tensor 'b' data_offsets begin at 20, leaving a hole at \[16, 20\)/,
    ],
    [
      'a size that does not match the shape',
      safetensorsBytes({ a: entry(0, 12) }, new Uint8Array(12)),
      /model\.safetensors: tensor 'a' data_offsets \[0, 12\] span 12 bytes but F32 \[2, 2\] needs 16/,
    ],
    [
      'an unknown dtype',
      safetensorsBytes({ a: { dtype: 'Q4', shape: [2], data_offsets: [0, 16] } }, data16),
      /model\.safetensors: tensor 'a' dtype "Q4" is not a safetensors dtype/,
    ],
    [
      'an integer (quantized) tensor',
      safetensorsBytes({ a: { dtype: 'I32', shape: [4], data_offsets: [0, 16] } }, data16),
      /model\.safetensors: tensor 'a' dtype I32 is not supported \(supported: F32, F16, BF16/,
    ],
    [
      'a negative dimension',
      safetensorsBytes({ a: entry(0, 16, [-4, -1]) }, data16),
      /model\.safetensors: tensor 'a' shape \[-4,-1\] is not a list of integers >= 0/,
    ],
    [
      'bad data_offsets',
      safetensorsBytes({ a: { dtype: 'F32', shape: [4], data_offsets: [0] } }, data16),
      /model\.safetensors: tensor 'a' data_offsets \[0\] is not \[begin, end\]/,
    ],
    [
      'trailing bytes',
      safetensorsBytes({ a: entry(0, 16) }, new Uint8Array(20)),
      /model\.safetensors: data section is 20 bytes but its tensors cover 16/,
    ],
    [
      'a non-string metadata value',
      safetensorsBytes({ __metadata__: { format: 1 }, a: entry(0, 16) }, data16),
      /model\.safetensors: __metadata__\.format is not a string/,
    ],
  ])('%s', async (_, bytes, pattern) => {
    await expectRefusal(async () => openCheckpoint(await dirWith(bytes)), pattern);
  });

  it('no weights at all', async () => {
    const tiny = await writeTinyCheckpoint(fresh(), { architecture: 'llama' });
    await rm(join(tiny.dir, 'model.safetensors'));
    await writeFile(join(tiny.dir, 'pytorch_model.bin'), 'pickle');
    await expectRefusal(
      () => openCheckpoint(tiny.dir),
      /model\.safetensors is missing, and so is model\.safetensors\.index\.json \(pytorch_model\.bin is not supported/,
    );
  });

  it('a sharded index that names a missing shard, a tensor its shard lacks, or a path outside', async () => {
    const tiny = await writeTinyCheckpoint(fresh(), { architecture: 'llama', shards: 2 });
    const indexFile = join(tiny.dir, 'model.safetensors.index.json');
    const index = JSON.parse(await readFile(indexFile, 'utf8'));
    const write = (weight_map: Record<string, string>) =>
      writeFile(indexFile, JSON.stringify({ ...index, weight_map }));

    await write({ ...index.weight_map, [HF_NAMES.finalNorm]: 'model-00003-of-00003.safetensors' });
    await expectRefusal(
      () => openCheckpoint(tiny.dir),
      /model\.safetensors\.index\.json: weight_map names 'model-00003-of-00003\.safetensors', which is missing/,
    );

    await write({ ...index.weight_map, [HF_NAMES.embed]: tiny.files[1]! });
    await expectRefusal(
      () => openCheckpoint(tiny.dir),
      /model-00002-of-00002\.safetensors: tensor 'model\.embed_tokens\.weight' is listed in model\.safetensors\.index\.json but not in this file/,
    );

    await write({ ...index.weight_map, [HF_NAMES.embed]: '../elsewhere.safetensors' });
    await expectRefusal(
      () => openCheckpoint(tiny.dir),
      /model\.safetensors\.index\.json: weight_map\['model\.embed_tokens\.weight'\] '\.\.\/elsewhere\.safetensors' must be a file name/,
    );

    await writeFile(indexFile, '{"weight_map": 3}');
    await expectRefusal(
      () => openCheckpoint(tiny.dir),
      /model\.safetensors\.index\.json: weight_map is invalid/,
    );
  });
});
