import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { CheckpointError, fail } from '../checkpoint/errors.ts';

/**
 * The tokenizer's files in an HF model directory, validated with zod:
 *   tokenizer.json          required: the tokenizers-library pipeline (model, pre-tokenizer, decoder...)
 *   tokenizer_config.json   optional: special tokens by name, chat_template
 *   chat_template.jinja     optional: newer transformers save the template here instead
 *   generation_config.json  optional: eos_token_id (one id or a list: every id that ends a turn)
 */

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
export const CHAT_TEMPLATE_FILE = 'chat_template.jinja';
export const GENERATION_CONFIG_FILE = 'generation_config.json';

const TokenizerJson = z.looseObject({
  model: z.looseObject({ type: z.string().optional() }),
  added_tokens: z
    .array(
      z.looseObject({
        id: z.number().int().nonnegative(),
        content: z.string(),
        special: z.boolean().optional(),
        lstrip: z.boolean().optional(),
        rstrip: z.boolean().optional(),
      }),
    )
    .default([]),
});
export type TokenizerJson = z.infer<typeof TokenizerJson>;

/** A special token as tokenizer_config.json writes it: a string, or an AddedToken object. */
const TokenLike = z.union([z.string(), z.looseObject({ content: z.string() })]).nullish();
const NamedTemplate = z.object({ name: z.string(), template: z.string() });

const TokenizerConfigJson = z.looseObject({
  bos_token: TokenLike,
  eos_token: TokenLike,
  pad_token: TokenLike,
  unk_token: TokenLike,
  additional_special_tokens: z
    .array(z.union([z.string(), z.looseObject({ content: z.string() })]))
    .optional(),
  chat_template: z.union([z.string(), z.array(NamedTemplate)]).nullish(),
});
export type TokenizerConfigJson = z.infer<typeof TokenizerConfigJson>;

const TokenId = z.number().int().nonnegative();
const GenerationConfigJson = z.looseObject({
  bos_token_id: TokenId.nullish(),
  eos_token_id: z.union([TokenId, z.array(TokenId)]).nullish(),
  pad_token_id: TokenId.nullish(),
});
export type GenerationConfigJson = z.infer<typeof GenerationConfigJson>;

export interface TokenizerFiles {
  tokenizer: TokenizerJson;
  config: TokenizerConfigJson;
  /** chat_template.jinja, when present. */
  templateFile?: string;
  generation?: GenerationConfigJson;
  paths: { tokenizer: string; config: string; templateFile: string; generation: string };
}

export async function readTokenizerFiles(dir: string): Promise<TokenizerFiles> {
  const paths = {
    tokenizer: join(dir, TOKENIZER_FILE),
    config: join(dir, TOKENIZER_CONFIG_FILE),
    templateFile: join(dir, CHAT_TEMPLATE_FILE),
    generation: join(dir, GENERATION_CONFIG_FILE),
  };
  const tokenizerText = await readText(paths.tokenizer);
  if (tokenizerText === undefined) {
    fail(
      paths.tokenizer,
      'file',
      'is missing (a fast-tokenizer tokenizer.json is required; tokenizer.model alone is not supported)',
    );
  }
  const tokenizer = parse(TokenizerJson, parseJson(tokenizerText, paths.tokenizer), paths.tokenizer);
  const configText = await readText(paths.config);
  const config =
    configText === undefined
      ? {}
      : parse(TokenizerConfigJson, parseJson(configText, paths.config), paths.config);
  const templateFile = await readText(paths.templateFile);
  const generationText = await readText(paths.generation);
  const generation =
    generationText === undefined
      ? undefined
      : parse(GenerationConfigJson, parseJson(generationText, paths.generation), paths.generation);
  return {
    tokenizer,
    config,
    ...(templateFile !== undefined ? { templateFile } : {}),
    ...(generation ? { generation } : {}),
    paths,
  };
}

/** The content of a special token, whichever form tokenizer_config.json used. */
export function tokenContent(token: string | { content: string } | null | undefined): string | undefined {
  if (token == null) return undefined;
  return typeof token === 'string' ? token : token.content;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    fail(path, 'file', `cannot be read (${(e as Error).message})`);
  }
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    fail(file, 'content', `is not valid JSON (${(e as Error).message})`);
  }
}

function parse<T extends z.ZodType>(schema: T, json: unknown, file: string): z.infer<T> {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    fail(file, 'content', 'is not a JSON object');
  const parsed = schema.safeParse(json);
  if (parsed.success) return parsed.data;
  throw new CheckpointError(
    parsed.error.issues.map((issue) => {
      let value: unknown = json;
      for (const key of issue.path) value = (value as Record<PropertyKey, unknown> | undefined)?.[key];
      const field = issue.path
        .map((k) => (typeof k === 'number' ? `[${k}]` : `.${String(k)}`))
        .join('')
        .replace(/^\./, '');
      return {
        file,
        field: field || 'content',
        detail: value === undefined ? 'is missing' : `is invalid (${issue.message})`,
      };
    }),
  );
}
