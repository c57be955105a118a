import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../gpu-worker/src/backbone/checkpoint/index.ts';
import { openCheckpoint } from '../../gpu-worker/src/backbone/checkpoint/source.ts';
import { storedValues } from '../../gpu-worker/src/backbone/dev/safetensors-writer.ts';
import { Backbone } from '../../gpu-worker/src/backbone/index.ts';
import { loadTokenizer } from '../../gpu-worker/src/backbone/tokenizer/index.ts';
import { causalLMLogits, causalLMParams, Graph, toModelBytes } from '../../gpu-worker/src/graph/index.ts';
import { createSession, f32, i64 } from '../../gpu-worker/src/runtime/index.ts';
import { pretokenize, trainBpe } from '../../scripts/pretrain/bpe.ts';
import {
  brownSplit,
  type Doc,
  detokenizeBrown,
  parseSynset,
  wordnetDocs,
} from '../../scripts/pretrain/corpus.ts';
import { prepareData } from '../../scripts/pretrain/data.ts';
import { exportModel } from '../../scripts/pretrain/export.ts';
import { bigramPerplexity, unigramPerplexity } from '../../scripts/pretrain/ngram.ts';
import { learningRate, type Recipe } from '../../scripts/pretrain/recipe.ts';
import { definition, emailText, genreTask, glossTask } from '../../scripts/pretrain/tasks.ts';
import { pretrain } from '../../scripts/pretrain/train.ts';
import { referenceForward } from '../helpers/reference-llm.ts';

const root = mkdtempSync(join(tmpdir(), 'ladder-pretrain-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const WORDS = 'the a cat dog sat ran on under mat tree quickly slowly and then saw big small red'.split(' ');
/** A small seeded corpus: a training part (both sources) and a held-out part. */
function corpus(): Doc[] {
  let s = 7;
  const word = () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return WORDS[s % WORDS.length]!;
  };
  const text = (n: number) =>
    Array.from({ length: n }, () => `${Array.from({ length: 8 }, word).join(' ')}.`).join(' ');
  const docs: Doc[] = [];
  for (let i = 0; i < 12; i++) docs.push({ source: 'brown', id: `b${i}`, split: 'train', text: text(12) });
  for (let i = 0; i < 12; i++) docs.push({ source: 'wordnet', id: `w${i}`, split: 'train', text: text(12) });
  for (let i = 0; i < 3; i++) docs.push({ source: 'brown', id: `h${i}`, split: 'heldout', text: text(12) });
  return docs;
}

const RECIPE: Recipe = {
  model: { vocab: 320, d: 32, layers: 2, heads: 2, kvHeads: 1, ffn: 48, ropeTheta: 10_000, eps: 1e-5 },
  seq: 16,
  batch: 2,
  steps: 6,
  warmupSteps: 2,
  peakLr: 3e-3,
  finalLrFraction: 0.1,
  weightDecay: 0.1,
  beta2: 0.95,
  maxGradNorm: 1,
  brownShare: 0.5,
  seed: 5,
  checkpointEvery: 2,
  evalEvery: 4,
  evalWindows: 2,
};

describe('pretraining recipe: corpus', () => {
  it('detokenizes tagged Brown text and parses WordNet synsets', () => {
    expect(detokenizeBrown("The/at jury/nn ,/, ``/`` deserves/vbz the/at praise/nn ''/'' ./.")).toBe(
      'The jury, "deserves the praise".',
    );
    const s = parseSynset(
      'noun',
      '00002137 03 n 02 abstraction 0 abstract_entity 0 010 @ 00001740 n 0000 | a general concept',
    );
    expect(s).toEqual({
      pos: 'noun',
      offset: '00002137',
      lemmas: ['abstraction', 'abstract entity'],
      gloss: 'a general concept',
    });
    // Held-out files: 5 mod 10 in every genre; 0 mod 4 only in the task genres.
    expect([brownSplit('ca05'), brownSplit('ck15'), brownSplit('ca04'), brownSplit('ck04')]).toEqual([
      'heldout',
      'heldout',
      'genre-task',
      'train',
    ]);
  });
});

describe('pretraining recipe: byte-level BPE', () => {
  it('merges the most frequent pair first and round-trips through the HF tokenizer', async () => {
    const texts = ['low lower lowest', 'low low newer wider', 'é café'];
    // Count adjacent byte pairs inside pre-tokenized pieces, independently of the trainer.
    const counts = new Map<string, number>();
    for (const t of texts) {
      for (const piece of pretokenize(t)) {
        const bytes = [...new TextEncoder().encode(piece)];
        for (let i = 0; i + 1 < bytes.length; i++) {
          const k = `${bytes[i]},${bytes[i + 1]}`;
          counts.set(k, (counts.get(k) ?? 0) + 1);
        }
      }
    }
    const top = Math.max(...counts.values());
    const model = trainBpe(texts, 256 + 10 + 3);
    const [a, b] = model.merges[0]!;
    const first = [a, b].map((t) => model.vocab.get(t));
    expect(counts.get(first.join(','))).toBe(top);

    const dir = join(root, 'bpe');
    const data = await prepareData(dir, RECIPE, corpus);
    const tok = await loadTokenizer(dir);
    const sample = 'the cat sat under the big red tree, quickly. Ünïcödé €';
    const ids = tok.encode(sample);
    expect(tok.decode(ids)).toBe(sample);
    expect(ids.length).toBeLessThan(new TextEncoder().encode(sample).length);
    expect(tok.vocabSize).toBeLessThanOrEqual(RECIPE.model.vocab);
    expect(data.heldout.length).toBeGreaterThan(RECIPE.seq * 2);
  });
});

describe('pretraining recipe: training', () => {
  it('warms up linearly and decays by cosine to the floor', () => {
    const r = { ...RECIPE, steps: 102, warmupSteps: 2 };
    expect(learningRate(r, 0)).toBeCloseTo(r.peakLr / 2);
    expect(learningRate(r, 1)).toBeCloseTo(r.peakLr);
    expect(learningRate(r, 101)).toBeCloseTo(r.peakLr * r.finalLrFraction);
    expect(learningRate(r, 51)).toBeCloseTo(r.peakLr * (0.1 + 0.9 * 0.5));
  });

  it('resumes from a checkpoint exactly, and the exported HF directory computes what the engine trained', async () => {
    const straight = join(root, 'straight');
    const resumed = join(root, 'resumed');
    const dataA = await prepareData(straight, RECIPE, corpus);
    const dataB = await prepareData(resumed, RECIPE, corpus);
    const a = await pretrain(RECIPE, dataA, { dir: straight });
    const half = await pretrain(RECIPE, dataB, { dir: resumed, stopAt: 3 });
    expect(half.finished).toBe(false);
    const b = await pretrain(RECIPE, dataB, { dir: resumed });
    expect(b.finished).toBe(true);
    for (const [name, value] of Object.entries(a.params)) expect(b.params[name], name).toEqual(value);
    expect(a.heldoutLoss).toBeLessThan(Math.log(RECIPE.model.vocab));

    // The exported weights (float16) through the independent float64 HF forward match the engine's
    // own forward on the same float16-rounded parameters.
    const out = join(root, 'model');
    await exportModel(straight, dataA, RECIPE, { outDir: out });
    const config = await loadConfig(out);
    const source = await openCheckpoint(out);
    const weights = new Map<string, Float32Array>();
    for (const name of source.tensors.keys()) weights.set(name, await source.read(name));
    await source.close();
    const ids = [...dataA.heldout.subarray(0, 12)];
    const ref = referenceForward(config, weights, ids);

    const g = new Graph({ name: 'logits' });
    const specs = causalLMParams(RECIPE.model);
    const inputs = Object.fromEntries(specs.map((p) => [p.name, g.input(p.name, 'float32', p.shape)]));
    const batch = {
      input_ids: g.input('input_ids', 'int64', [1, 12]),
      positions: g.input('positions', 'int64', [1, 12]),
    };
    g.output(causalLMLogits(g, RECIPE.model, inputs, batch), 'logits');
    const session = await createSession(toModelBytes(g));
    const feeds = Object.fromEntries(
      specs.map((p) => [p.name, f32(storedValues('F16', a.params[p.name]!), p.shape)]),
    );
    const res = await session.run({
      ...feeds,
      input_ids: i64(ids, [1, 12]),
      positions: i64(
        ids.map((_, i) => i),
        [1, 12],
      ),
    });
    await session.dispose();
    const logits = res.logits!.data as Float32Array;
    let worst = 0;
    for (let t = 0; t < 12; t++) {
      for (let v = 0; v < RECIPE.model.vocab; v++) {
        worst = Math.max(worst, Math.abs(logits[t * RECIPE.model.vocab + v]! - ref.logits[t]![v]!));
      }
    }
    expect(worst).toBeLessThan(1e-4);

    // And the platform's loader serves it (4-bit) like any checkpoint.
    const backbone = await Backbone.open(out, { cacheDir: join(root, 'cache') });
    const reply = await backbone.complete([{ role: 'user', content: 'the cat' }], { maxTokens: 4 });
    expect(reply.usage.completionTokens).toBeGreaterThan(0);
    await backbone.dispose();
  });
});

describe('pretraining recipe: baselines and real tasks', () => {
  it('scores n-gram baselines as their formulas say', () => {
    const train = Uint16Array.from([0, 1, 0, 1, 2]);
    const heldout = Uint16Array.from([0, 1, 2]);
    // add-one unigram over V=4: p(1) = 3/9, p(2) = 2/9
    expect(unigramPerplexity(train, heldout, 4)).toBeCloseTo(
      Math.exp(-(Math.log(3 / 9) + Math.log(2 / 9)) / 2),
    );
    // Kneser-Ney, D=0.75: bigram types {01, 10, 12}; c(0)=2, c(1)=2; p_cont(1)=1/3, p_cont(2)=1/3
    const pc = (x: number) => 0.999 * x + 0.001 / 4;
    const p01 = (2 - 0.75) / 2 + ((0.75 * 1) / 2) * pc(1 / 3);
    const p12 = (1 - 0.75) / 2 + ((0.75 * 2) / 2) * pc(1 / 3);
    expect(bigramPerplexity(train, heldout, 4)).toBeCloseTo(Math.exp(-(Math.log(p01) + Math.log(p12)) / 2));
  });

  it('reads an email as subject and plain body, and keeps each task apart from pretraining', () => {
    const raw = 'From: a@b\nSubject: Cheap  pills\nX: y\n\n<html><b>Buy</b>&nbsp;now=\n!</html>';
    expect(emailText(raw)).toBe('Subject: Cheap  pills\nBuy now!');
    expect(definition('a financial institution; "he cashed a check at the bank"')).toBe(
      'a financial institution',
    );
    const gloss = glossTask();
    const trainWords = new Set(gloss.train.map((l) => l.prompt));
    expect(gloss.test.length).toBeGreaterThan(50);
    expect(gloss.test.every((l) => !trainWords.has(l.prompt))).toBe(true);
    // No gloss-task synset is in the pretraining text.
    const corpusText = wordnetDocs()
      .map((d) => d.text)
      .join('\n');
    // (the word may still name a verb or adjective synset there: only its noun sense is held out)
    const nounLemmas = new Set(
      corpusText
        .split('\n')
        .filter((line) => line.includes(' (noun): '))
        .flatMap((line) => line.split(' (noun): ')[0]!.split(', ')),
    );
    for (const l of [...gloss.train, ...gloss.test])
      expect(nounLemmas.has(l.prompt.slice(0, -1))).toBe(false);
    const genre = genreTask();
    expect(new Set(genre.test.map((l) => l.label)).size).toBe(5);
    const trainText = new Set(genre.train.map((l) => l.text));
    expect(genre.test.some((l) => trainText.has(l.text))).toBe(false);
  });
});
