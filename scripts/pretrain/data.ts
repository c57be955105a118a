import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { i64 } from '../../gpu-worker/src/runtime/index.ts';
import type { Feeds } from '../../gpu-worker/src/runtime/session.ts';
import { Rng } from '../../gpu-worker/src/util/rng.ts';
import { type BpeModel, SPECIAL_TOKENS, tokenizerConfigJson, tokenizerJson, trainBpe } from './bpe.ts';
import { corpusDocs, type Doc } from './corpus.ts';
import type { Recipe } from './recipe.ts';

/** The corpus as token streams, each document followed by `<|endoftext|>`. */
export interface TokenData {
  tokenizer: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  /** sha256 of tokenizer.json: checkpoints and data files name the tokenizer they were made with. */
  tokenizerHash: string;
  brown: Uint16Array;
  wordnet: Uint16Array;
  /** Held-out Brown (the perplexity split). */
  heldout: Uint16Array;
}

async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  await writeFile(`${path}.tmp`, data);
  await rename(`${path}.tmp`, path);
}

const bytesOf = (a: Uint16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const u16Of = (b: Buffer) => new Uint16Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));

export function encodeDocs(tok: Tokenizer, docs: readonly Doc[], eot: number): Uint16Array {
  const parts: number[][] = docs.map((d) => [...tok.encode(d.text).ids, eot]);
  const out = new Uint16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Train the tokenizer on the training documents and encode every stream, once: the results are
 * kept in `dir` and reused by a resumed run (training the BPE takes ~20 s, encoding ~30 s).
 */
export async function prepareData(
  dir: string,
  recipe: Recipe,
  corpus: () => Doc[] = corpusDocs,
): Promise<TokenData> {
  await mkdir(dir, { recursive: true });
  const files = ['tokenizer.json', 'tokenizer_config.json', 'brown.u16', 'wordnet.u16', 'heldout.u16'];
  if (!files.every((f) => existsSync(join(dir, f)))) {
    const docs = corpus();
    const train = docs.filter((d) => d.split === 'train');
    const bpe: BpeModel = trainBpe(
      train.map((d) => d.text),
      recipe.model.vocab,
    );
    const tokenizer = tokenizerJson(bpe);
    const tok = new Tokenizer(tokenizer as never, {} as never);
    const eot = tok.token_to_id(SPECIAL_TOKENS[0])!;
    const streams = {
      brown: encodeDocs(
        tok,
        train.filter((d) => d.source === 'brown'),
        eot,
      ),
      wordnet: encodeDocs(
        tok,
        train.filter((d) => d.source === 'wordnet'),
        eot,
      ),
      heldout: encodeDocs(
        tok,
        docs.filter((d) => d.split === 'heldout'),
        eot,
      ),
    };
    for (const [name, s] of Object.entries(streams)) await writeAtomic(join(dir, `${name}.u16`), bytesOf(s));
    await writeAtomic(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfigJson(bpe), null, 2));
    await writeAtomic(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  }
  const tokenizerText = await readFile(join(dir, 'tokenizer.json'), 'utf8');
  return {
    tokenizer: JSON.parse(tokenizerText),
    tokenizerConfig: JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8')),
    tokenizerHash: createHash('sha256').update(tokenizerText).digest('hex'),
    brown: u16Of(await readFile(join(dir, 'brown.u16'))),
    wordnet: u16Of(await readFile(join(dir, 'wordnet.u16'))),
    heldout: u16Of(await readFile(join(dir, 'heldout.u16'))),
  };
}

/** (input_ids, labels, positions) for `rows` windows starting at `starts` of `streams`. */
function windows(
  rows: { stream: Uint16Array; start: number }[],
  seq: number,
): { input_ids: number[]; labels: number[]; positions: number[] } {
  const input_ids: number[] = [];
  const labels: number[] = [];
  const positions: number[] = [];
  for (const { stream, start } of rows) {
    for (let t = 0; t < seq; t++) {
      input_ids.push(stream[start + t]!);
      labels.push(stream[start + t + 1]!);
      positions.push(t);
    }
  }
  return { input_ids, labels, positions };
}

function feeds(w: ReturnType<typeof windows>, rows: number, seq: number): Feeds {
  return {
    input_ids: i64(w.input_ids, [rows, seq]),
    labels: i64(w.labels, [rows, seq]),
    positions: i64(w.positions, [rows, seq]),
  };
}

/**
 * Step `step`'s batch: each window from Brown with probability brownShare (else WordNet) at a
 * uniform offset. It depends on (seed, step) alone, so a resumed run draws exactly the batches
 * the uninterrupted one would have.
 */
export function trainBatch(data: TokenData, recipe: Recipe, step: number): Feeds {
  const rng = new Rng((recipe.seed ^ Math.imul(step + 1, 0x9e3779b1)) >>> 0);
  const rows = Array.from({ length: recipe.batch }, () => {
    const stream = rng.next() < recipe.brownShare ? data.brown : data.wordnet;
    return { stream, start: rng.int(stream.length - recipe.seq - 1) };
  });
  return feeds(windows(rows, recipe.seq), recipe.batch, recipe.seq);
}

/** Consecutive non-overlapping held-out windows, `count` of them (all when undefined), in batches. */
export function heldoutBatches(data: TokenData, recipe: Recipe, count?: number): Feeds[] {
  const total = Math.floor((data.heldout.length - 1) / recipe.seq);
  const n = Math.min(total, count ?? total);
  const out: Feeds[] = [];
  for (let b = 0; b < n; b += recipe.batch) {
    const rows = Array.from({ length: Math.min(recipe.batch, n - b) }, (_, i) => ({
      stream: data.heldout,
      start: (b + i) * recipe.seq,
    }));
    out.push(feeds(windows(rows, recipe.seq), rows.length, recipe.seq));
  }
  return out;
}
