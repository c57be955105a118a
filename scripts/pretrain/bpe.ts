import { BYTE_CHARS, CHATML_TEMPLATE } from '../../gpu-worker/src/backbone/dev/tiny-checkpoint.ts';

/**
 * A byte-level BPE trainer (Sennrich et al., https://arxiv.org/abs/1508.07909; GPT-2's byte-level
 * variant) writing the `tokenizer.json` schema that Hugging Face `tokenizers` loads, with the same
 * pre-tokenizer (ByteLevel, use_regex) the loader applies, so training and use split text alike.
 *
 * Ids: 0-255 the bytes (in GPT-2's printable-character form), then one id per merge in rank order,
 * then the special tokens.
 */

export const SPECIAL_TOKENS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] as const;

/** GPT-2's pre-tokenization pattern, the one `ByteLevel { use_regex: true }` applies. */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export function pretokenize(text: string): string[] {
  return text.match(GPT2_SPLIT) ?? [];
}

const encoder = new TextEncoder();

export interface BpeModel {
  /** Token text (in byte characters) -> id. */
  vocab: Map<string, number>;
  merges: [string, string][];
}

/**
 * Learn `vocabSize - 256 - specials` merges from `texts`. Pair counts are kept incrementally: a merge
 * rewrites only the words that hold the pair, so the cost is the words touched, not the corpus.
 * Ties go to the pair seen first in the corpus (deterministic for a given input).
 */
export function trainBpe(texts: Iterable<string>, vocabSize: number): BpeModel {
  const wordIndex = new Map<string, number>();
  const counts: number[] = [];
  const words: number[][] = [];
  for (const text of texts) {
    for (const piece of pretokenize(text)) {
      const at = wordIndex.get(piece);
      if (at !== undefined) counts[at]! += 1;
      else {
        wordIndex.set(piece, words.length);
        words.push(Array.from(encoder.encode(piece)));
        counts.push(1);
      }
    }
  }
  const tokens: string[] = [...BYTE_CHARS];
  const merges: [string, string][] = [];
  const target = vocabSize - SPECIAL_TOKENS.length;
  const KEY = 1 << 16;
  const key = (a: number, b: number) => a * KEY + b;
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const addPairs = (w: number, sign: 1 | -1) => {
    const syms = words[w]!;
    for (let i = 0; i + 1 < syms.length; i++) {
      const k = key(syms[i]!, syms[i + 1]!);
      pairCount.set(k, (pairCount.get(k) ?? 0) + sign * counts[w]!);
      if (sign > 0) {
        const set = pairWords.get(k);
        if (set) set.add(w);
        else pairWords.set(k, new Set([w]));
      }
    }
  };
  for (let w = 0; w < words.length; w++) addPairs(w, 1);

  while (tokens.length < target) {
    let best = -1;
    let bestCount = 1; // a pair seen once is not worth a token
    for (const [k, c] of pairCount) {
      if (c > bestCount) {
        best = k;
        bestCount = c;
      }
    }
    if (best < 0) break;
    const a = Math.floor(best / KEY);
    const b = best % KEY;
    const id = tokens.length;
    tokens.push(tokens[a]! + tokens[b]!);
    merges.push([tokens[a]!, tokens[b]!]);
    for (const w of pairWords.get(best) ?? []) {
      const syms = words[w]!;
      addPairs(w, -1);
      const merged: number[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          merged.push(id);
          i++;
        } else merged.push(syms[i]!);
      }
      words[w] = merged;
      addPairs(w, 1);
    }
    pairWords.delete(best);
    pairCount.delete(best);
  }
  return { vocab: new Map(tokens.map((t, i) => [t, i])), merges };
}

/** tokenizer.json (the schema `tokenizers` writes; ByteLevel BPE as Qwen2 and GPT-2 use). */
export function tokenizerJson(model: BpeModel): Record<string, unknown> {
  const first = model.vocab.size;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content, i) => ({
      id: first + i,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
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
      vocab: Object.fromEntries(model.vocab),
      merges: model.merges,
    },
  };
}

/** tokenizer_config.json with the ChatML chat template and end-of-turn as eos. */
export function tokenizerConfigJson(model: BpeModel): Record<string, unknown> {
  const first = model.vocab.size;
  return {
    add_bos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: Object.fromEntries(
      SPECIAL_TOKENS.map((content, i) => [
        String(first + i),
        { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
      ]),
    ),
    bos_token: null,
    eos_token: '<|im_end|>',
    pad_token: '<|endoftext|>',
    unk_token: null,
    chat_template: CHATML_TEMPLATE,
    clean_up_tokenization_spaces: false,
    model_max_length: 1024,
    tokenizer_class: 'Qwen2Tokenizer',
  };
}
