import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { Architecture, BackboneConfig, Llama3RopeScaling } from '../types.ts';
import { CheckpointError, type CheckpointProblem, fail } from './errors.ts';

/** HF `architectures[0]` -> our family. Each family's quirks are in `FAMILY`. */
export const SUPPORTED_ARCHITECTURES: Record<string, Architecture> = {
  LlamaForCausalLM: 'llama',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
};

// Defaults are the HF config classes' own (LlamaConfig, Qwen2Config, Qwen3Config).
const FAMILY: Record<Architecture, { maxPositions: number; qkvBias: boolean; qkNorm: boolean }> = {
  llama: { maxPositions: 2048, qkvBias: false, qkNorm: false },
  qwen2: { maxPositions: 32768, qkvBias: true, qkNorm: false },
  qwen3: { maxPositions: 32768, qkvBias: false, qkNorm: true },
};

const posInt = z.number().int().positive();
const rope = z.looseObject({ rope_type: z.string().optional(), type: z.string().optional() });

const RawConfig = z.object({
  architectures: z.array(z.string()).length(1),
  vocab_size: posInt,
  hidden_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: posInt.nullish(),
  head_dim: posInt.nullish(),
  intermediate_size: posInt,
  rms_norm_eps: z.number().positive().default(1e-6),
  rope_theta: z.number().positive().default(10_000),
  rope_scaling: rope.nullish(),
  // transformers v5 moved rope_theta and rope_scaling into one `rope_parameters` object.
  rope_parameters: rope.extend({ rope_theta: z.number().positive().optional() }).nullish(),
  max_position_embeddings: posInt.optional(),
  tie_word_embeddings: z.boolean().default(false),
  hidden_act: z.string().default('silu'),
  attention_bias: z.boolean().default(false),
  mlp_bias: z.boolean().default(false),
  use_sliding_window: z.boolean().default(false),
  layer_types: z.array(z.string()).optional(),
  quantization_config: z.looseObject({ quant_method: z.string().optional() }).nullish(),
});

const Llama3Scaling = z.object({
  factor: z.number().positive(),
  low_freq_factor: z.number().positive(),
  high_freq_factor: z.number().positive(),
  original_max_position_embeddings: posInt,
});

/** Reads `<dir>/config.json` and normalises it; anything the backbone cannot run is refused by name. */
export async function loadConfig(dir: string): Promise<BackboneConfig> {
  const file = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    fail(file, 'file', `cannot be read (${(e as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(file, 'content', `is not valid JSON (${(e as Error).message})`);
  }
  return parseConfig(json, file);
}

/** Validates an already-parsed config.json; `file` is only used in error messages. */
export function parseConfig(json: unknown, file = 'config.json'): BackboneConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    fail(file, 'content', 'is not a JSON object');
  const arch = (json as { architectures?: unknown }).architectures;
  if (Array.isArray(arch) && typeof arch[0] === 'string' && !(arch[0] in SUPPORTED_ARCHITECTURES)) {
    fail(
      file,
      'architectures[0]',
      `'${arch[0]}' is not supported (supported: ${Object.keys(SUPPORTED_ARCHITECTURES).join(', ')})`,
    );
  }
  const parsed = RawConfig.safeParse(json);
  if (!parsed.success) throw new CheckpointError(parsed.error.issues.map((i) => zodProblem(file, json, i)));
  const c = parsed.data;
  const architecture = SUPPORTED_ARCHITECTURES[c.architectures[0]!]!;
  const family = FAMILY[architecture];

  const problems: CheckpointProblem[] = [];
  const refuse = (field: string, detail: string) => problems.push({ file, field, detail });
  if (c.quantization_config) {
    refuse(
      'quantization_config',
      `(${c.quantization_config.quant_method ?? 'unknown'}) is not supported: use an unquantized checkpoint`,
    );
  }
  if (c.hidden_act !== 'silu') refuse('hidden_act', `'${c.hidden_act}' is not supported (supported: silu)`);
  if (c.attention_bias && architecture !== 'qwen2')
    refuse('attention_bias', 'true is not supported (q/k/v/o biases)');
  if (c.mlp_bias) refuse('mlp_bias', 'true is not supported');
  if (c.use_sliding_window) refuse('use_sliding_window', 'true is not supported (full attention only)');
  const sliding = c.layer_types?.findIndex((t) => t !== 'full_attention') ?? -1;
  if (sliding >= 0)
    refuse(`layer_types[${sliding}]`, `'${c.layer_types![sliding]}' is not supported (full_attention only)`);

  const heads = c.num_attention_heads;
  const kvHeads = c.num_key_value_heads ?? heads;
  if (heads % kvHeads !== 0) {
    refuse('num_key_value_heads', `${kvHeads} does not divide num_attention_heads ${heads}`);
  }
  if (c.head_dim == null && c.hidden_size % heads !== 0) {
    refuse(
      'hidden_size',
      `${c.hidden_size} is not a multiple of num_attention_heads ${heads} (and head_dim is not set)`,
    );
  }

  const ropeField = c.rope_parameters ? 'rope_parameters' : 'rope_scaling';
  const ropeScaling = parseRopeScaling(c.rope_parameters ?? c.rope_scaling, ropeField, refuse);
  if (problems.length) throw new CheckpointError(problems);

  return {
    architecture,
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    layers: c.num_hidden_layers,
    heads,
    kvHeads,
    headDim: c.head_dim ?? c.hidden_size / heads,
    intermediateSize: c.intermediate_size,
    rmsNormEps: c.rms_norm_eps,
    ropeTheta: c.rope_parameters?.rope_theta ?? c.rope_theta,
    ...(ropeScaling ? { ropeScaling } : {}),
    maxPositions: c.max_position_embeddings ?? family.maxPositions,
    tieWordEmbeddings: c.tie_word_embeddings,
    qkvBias: family.qkvBias,
    qkNorm: family.qkNorm,
  };
}

function parseRopeScaling(
  raw: z.infer<typeof rope> | null | undefined,
  field: string,
  refuse: (field: string, detail: string) => void,
): Llama3RopeScaling | undefined {
  if (!raw) return undefined;
  const kind = raw.rope_type ?? raw.type;
  const kindField = raw.rope_type !== undefined ? `${field}.rope_type` : `${field}.type`;
  if (kind === undefined || kind === 'default') return undefined;
  if (kind !== 'llama3') {
    refuse(kindField, `'${kind}' is not supported (supported: llama3, default)`);
    return undefined;
  }
  const parsed = Llama3Scaling.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const key = `${field}.${issue.path.join('.')}`;
      const value = (raw as Record<string, unknown>)[String(issue.path[0])];
      refuse(
        key,
        value === undefined ? 'is missing (required for llama3 scaling)' : `is invalid (${issue.message})`,
      );
    }
    return undefined;
  }
  const s = parsed.data;
  if (s.high_freq_factor <= s.low_freq_factor) {
    refuse(
      `${field}.high_freq_factor`,
      `${s.high_freq_factor} must exceed low_freq_factor ${s.low_freq_factor}`,
    );
    return undefined;
  }
  return {
    type: 'llama3',
    factor: s.factor,
    lowFreqFactor: s.low_freq_factor,
    highFreqFactor: s.high_freq_factor,
    originalMaxPositions: s.original_max_position_embeddings,
  };
}

function zodProblem(file: string, json: unknown, issue: z.core.$ZodIssue): CheckpointProblem {
  const field = formatPath(issue.path);
  let value: unknown = json;
  for (const key of issue.path) value = (value as Record<PropertyKey, unknown> | undefined)?.[key];
  const detail =
    value === undefined ? 'is missing' : `is invalid: ${JSON.stringify(value)} (${issue.message})`;
  return { file, field, detail };
}

function formatPath(path: readonly PropertyKey[]): string {
  return (
    path.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? String(k) : `.${String(k)}`)).join('') ||
    'content'
  );
}
