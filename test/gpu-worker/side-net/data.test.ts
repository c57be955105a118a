import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChatLine, DatasetRecord } from '@ladder/schemas';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BackboneTokenizer, loadTokenizer } from '../../../gpu-worker/src/backbone/tokenizer/index.ts';
import {
  argminLabel,
  BatchLoader,
  buildExample,
  classificationAccuracy,
  classificationCandidates,
  collate,
  collectLabels,
  DatasetError,
  type DataTokenizer,
  ExampleError,
  IGNORE_INDEX,
  planEpoch,
  prepareDataset,
  splitValidation,
  type TrainingExample,
  toTrainingExample,
} from '../../../gpu-worker/src/side-net/data/index.ts';
import { Rng } from '../../../gpu-worker/src/util/rng.ts';
import { writeTinyCheckpoint } from '../../helpers/tiny-checkpoint.ts';

let root: string;
let tok: BackboneTokenizer;
let imEnd: number;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ladder-data-'));
  const tiny = await writeTinyCheckpoint(join(root, 'tiny'), { architecture: 'qwen2' });
  tok = await loadTokenizer(tiny.dir);
  imEnd = tiny.tokens.imEnd;
  expect(tok.eosTokenId).toBe(imEnd); // the ChatML tokenizer's eos is <|im_end|>
  expect(tok.hasChatTemplate()).toBe(true);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const jsonl = (...lines: unknown[]) =>
  lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n');

/** Labelled tokens as contiguous runs, each decoded: what the loss trains the model to write. */
function labelledRuns(tokenizer: Pick<BackboneTokenizer, 'decode'>, e: TrainingExample): string[] {
  const runs: number[][] = [];
  let run: number[] = [];
  for (const l of e.labels) {
    if (l !== IGNORE_INDEX) run.push(l);
    else if (run.length) {
      runs.push(run);
      run = [];
    }
  }
  if (run.length) runs.push(run);
  return runs.map((r) => tokenizer.decode(r));
}

/** The whole sequence the example was cut from: its inputs, then the final target. */
function sequence(e: TrainingExample): number[] {
  return [...e.inputIds, e.labels.at(-1)!];
}

/** Every label is the next input: labels[t] = x_{t+1}. */
function expectShifted(e: TrainingExample): void {
  expect(e.labels.length).toBe(e.inputIds.length);
  for (let t = 0; t + 1 < e.inputIds.length; t++) {
    if (e.labels[t] !== IGNORE_INDEX) expect(e.labels[t]).toBe(e.inputIds[t + 1]);
  }
  expect(e.labels.at(-1)).not.toBe(IGNORE_INDEX); // nothing after the last target is kept
  expect(e.targetCount).toBe(e.labels.filter((l) => l !== IGNORE_INDEX).length);
}

const chat = (messages: ChatLine['messages'], line = 1): DatasetRecord => ({
  line,
  format: 'chat',
  value: { messages },
});

describe('examples: completion', () => {
  it('labels exactly the completion and eos, shifted by one', () => {
    const e = buildExample(
      tok,
      { line: 3, format: 'completion', value: { prompt: 'Hello World', completion: ' and the rest' } },
      { maxLength: 100 },
    );
    expectShifted(e);
    expect(e.line).toBe(3);
    expect(labelledRuns(tok, e)).toEqual([' and the rest<|im_end|>']);
    const prompt = tok.encode('Hello World');
    const completion = tok.encode(' and the rest', { addSpecialTokens: false });
    // Independent construction: prompt tokens then completion tokens, eos last (a target only).
    expect([...e.inputIds]).toEqual([...prompt, ...completion]);
    expect([...e.labels]).toEqual([...prompt.slice(1).map(() => IGNORE_INDEX), ...completion, imEnd]);
    expect(e.targetCount).toBe(completion.length + 1);
    expect(e.truncated).toBe('none');
  });

  it('an empty prompt leaves the first completion token untrained (nothing precedes it)', () => {
    const e = buildExample(
      tok,
      { line: 1, format: 'completion', value: { prompt: '', completion: 'Hello World' } },
      {
        maxLength: 100,
      },
    );
    const ids = tok.encode('Hello World', { addSpecialTokens: false });
    expect([...e.inputIds]).toEqual(ids);
    expect([...e.labels]).toEqual([...ids.slice(1), imEnd]);
  });
});

describe('examples: chat through the template', () => {
  const messages: ChatLine['messages'] = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi there' },
    { role: 'assistant', content: 'Hello World' },
    { role: 'user', content: 'and?' },
    { role: 'assistant', content: 'the end' },
  ];

  it("labels each assistant turn's content and its <|im_end|>, nothing else", () => {
    const e = buildExample(tok, chat(messages), { maxLength: 1000 });
    expectShifted(e);
    expect(labelledRuns(tok, e)).toEqual(['Hello World<|im_end|>', 'the end<|im_end|>']);
    // The sequence is the rendered chat, up to the last trained token (the final "\n" is dropped).
    const rendered = tok.applyChatTemplate(messages);
    expect(tok.decode(sequence(e))).toBe(
      rendered.slice(0, rendered.lastIndexOf('<|im_end|>') + '<|im_end|>'.length),
    );
    // Unlabelled (input token x_t is trained when labels[t-1] is set): everything else, exactly.
    const unlabelled = [...e.inputIds].filter((_, t) => t === 0 || e.labels[t - 1] === IGNORE_INDEX);
    expect(tok.decode(unlabelled)).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n' +
        '\n<|im_start|>user\nand?<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('drops turns after the last assistant message and trains an empty reply as just <|im_end|>', () => {
    const e = buildExample(
      tok,
      chat([
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: '' },
        { role: 'user', content: 'anything else?' },
      ]),
      { maxLength: 1000 },
    );
    expect(labelledRuns(tok, e)).toEqual(['<|im_end|>']);
    expect(tok.decode(sequence(e))).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<|im_end|>');
  });

  it('consecutive assistant messages are two trained turns', () => {
    const e = buildExample(
      tok,
      chat([
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello' },
        { role: 'assistant', content: 'World' },
      ]),
      { maxLength: 1000 },
    );
    expect(labelledRuns(tok, e)).toEqual(['Hello<|im_end|>', 'World<|im_end|>']);
  });

  it('an opening assistant message is trained after the bare generation prompt', () => {
    const e = buildExample(tok, chat([{ role: 'assistant', content: 'Hello' }]), { maxLength: 1000 });
    expect(tok.decode(sequence(e))).toBe('<|im_start|>assistant\nHello<|im_end|>');
    expect(labelledRuns(tok, e)).toEqual(['Hello<|im_end|>']);
  });

  /** A tokenizer whose chat template is a JS function, to exercise other template behaviours. */
  const withTemplate = (render: (m: readonly { role: string; content: string }[], gen: boolean) => string) =>
    ({
      encode: (text, opts) => tok.encode(text, opts),
      escapeChat: (m, opts) => tok.escapeChat(m, opts),
      applyChatTemplate: (m, opts) => render(m, opts?.addGenerationPrompt ?? false),
      eosTokenId: tok.eosTokenId,
      padTokenId: tok.padTokenId,
      stopTokenIds: tok.stopTokenIds,
      isSpecial: (id) => tok.isSpecial(id),
    }) satisfies DataTokenizer;

  it('follows a Qwen3-like template that renders the last turn differently from earlier ones', () => {
    // The final assistant turn after the last user message gets an empty think block, earlier ones
    // do not, so render(messages[:i+1]) is not a prefix of the whole chat for i < last.
    const qwen3ish = withTemplate((m, gen) => {
      const lastUser = m.findLastIndex((x) => x.role === 'user');
      let s = '';
      m.forEach((x, i) => {
        const think =
          x.role === 'assistant' && i > lastUser && i === m.length - 1 ? '<think>\n\n</think>\n\n' : '';
        s += `<|im_start|>${x.role}\n${think}${x.content}<|im_end|>\n`;
      });
      return gen ? `${s}<|im_start|>assistant\n` : s;
    });
    const e = buildExample(qwen3ish, chat(messages), { maxLength: 1000 });
    expectShifted(e);
    expect(labelledRuns(tok, e)).toEqual([
      'Hello World<|im_end|>',
      '<think>\n\n</think>\n\nthe end<|im_end|>',
    ]);
  });

  it('trains a whole turn when the template closes turns with plain text', () => {
    const plain = withTemplate((m, gen) => {
      const s = m.map((x) => `### ${x.role}:\n${x.content}\n\n`).join('');
      return gen ? `${s}### assistant:\n` : s;
    });
    const e = buildExample(plain, chat(messages.slice(1, 3)), { maxLength: 1000 });
    expect(labelledRuns(tok, e)).toEqual(['Hello World\n\n']);
  });

  it('refuses a template that is not prefix-stable, naming the line and the message', () => {
    const reversed = withTemplate((m, gen) =>
      [...m]
        .reverse()
        .map((x) => `<|im_start|>${x.role}\n${x.content}<|im_end|>\n`)
        .join('')
        .concat(gen ? '<|im_start|>assistant\n' : ''),
    );
    expect(() => buildExample(reversed, chat(messages, 9), { maxLength: 1000 })).toThrow(ExampleError);
    expect(() => buildExample(reversed, chat(messages, 9), { maxLength: 1000 })).toThrow(
      /^line 9: messages\.2: the chat template does not render/,
    );
  });
});

describe('examples: classification', () => {
  it('is a completion of the label text after a fixed prompt', () => {
    const e = buildExample(
      tok,
      { line: 2, format: 'classification', value: { text: 'Hello World', label: 'positive' } },
      {
        maxLength: 100,
      },
    );
    expectShifted(e);
    expect(e.classLabel).toBe('positive');
    expect(labelledRuns(tok, e)).toEqual([' positive<|im_end|>']);
    expect(tok.decode(sequence(e))).toBe('Text: Hello World\nLabel: positive<|im_end|>');
  });

  it('collects the sorted label set and builds one scoring candidate per label', () => {
    const records: DatasetRecord[] = ['pos', 'neg', 'pos', 'neutral'].map((label, i) => ({
      line: i + 1,
      format: 'classification',
      value: { text: 't', label },
    }));
    expect(collectLabels(records)).toEqual(['neg', 'neutral', 'pos']);
    const candidates = classificationCandidates(tok, 'great', ['neg', 'pos'], { maxLength: 100 });
    expect(candidates.map((c) => labelledRuns(tok, c))).toEqual([[' neg<|im_end|>'], [' pos<|im_end|>']]);
    // Same prompt for every candidate: the scores differ only by the label.
    const promptLength = (c: TrainingExample) => c.labels.findIndex((l) => l !== IGNORE_INDEX);
    expect([...candidates[0]!.inputIds.slice(0, promptLength(candidates[0]!) + 1)]).toEqual([
      ...candidates[1]!.inputIds.slice(0, promptLength(candidates[1]!) + 1),
    ]);
  });
});

describe('truncation keeps the completion', () => {
  // tokens 10..19; trained from index 6 (four completion tokens 16..19, the last one the "eos").
  const tokens = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19];
  const trained = tokens.map((_, i) => i >= 6);
  const _ = IGNORE_INDEX;

  it('fits: T = tokens - 1', () => {
    const e = toTrainingExample(tokens, trained, 9, 1);
    expect([...e.inputIds]).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18]);
    expect([...e.labels]).toEqual([_, _, _, _, _, 16, 17, 18, 19]);
    expect(e.truncated).toBe('none');
  });

  it('drops the start of the prompt first', () => {
    const e = toTrainingExample(tokens, trained, 5, 1);
    expect([...e.inputIds]).toEqual([14, 15, 16, 17, 18]);
    expect([...e.labels]).toEqual([_, 16, 17, 18, 19]);
    expect(e.truncated).toBe('prompt');
    const tight = toTrainingExample(tokens, trained, 4, 1);
    expect([...tight.inputIds]).toEqual([15, 16, 17, 18]);
    expect([...tight.labels]).toEqual([16, 17, 18, 19]);
    expect(tight.truncated).toBe('prompt');
  });

  it('cuts the end of the completion only when it cannot fit, keeping one context token', () => {
    const e = toTrainingExample(tokens, trained, 3, 1);
    expect([...e.inputIds]).toEqual([15, 16, 17]);
    expect([...e.labels]).toEqual([16, 17, 18]);
    expect(e.truncated).toBe('completion');
  });

  it('drops untrained tokens after the last target before anything else', () => {
    const tail = [...trained.slice(0, 8), false, false]; // 18, 19 untrained
    const e = toTrainingExample(tokens, tail, 100, 1);
    expect([...e.inputIds]).toEqual([10, 11, 12, 13, 14, 15, 16]);
    expect([...e.labels]).toEqual([_, _, _, _, _, 16, 17]);
  });

  it('refuses a sequence with nothing to train', () => {
    expect(() => toTrainingExample([1, 2], [true, false], 10, 4)).toThrow(/line 4: no token to train on/);
  });

  it('on real text: a long prompt loses its start, the completion decodes whole', () => {
    const value = { prompt: 'Hello World '.repeat(20), completion: ' the end' };
    const e = buildExample(tok, { line: 1, format: 'completion', value }, { maxLength: 8 });
    expect(e.inputIds.length).toBe(8);
    expect(e.truncated).toBe('prompt');
    expect(labelledRuns(tok, e)).toEqual([' the end<|im_end|>']);
    const long = buildExample(
      tok,
      { line: 1, format: 'completion', value: { prompt: 'Hi', completion: ' and'.repeat(20) } },
      {
        maxLength: 6,
      },
    );
    expect(long.truncated).toBe('completion');
    expect(long.targetCount).toBe(6);
    expect(labelledRuns(tok, long)).toEqual([' and'.repeat(6)]);
  });
});

describe('prepareDataset: the bad-lines policy', () => {
  const good = (i: number) => ({ prompt: `Hello ${i}`, completion: ' World' });

  it('turns a good file into examples and stats', () => {
    const d = prepareDataset(jsonl(good(1), '', good(2)), tok, { maxLength: 64 });
    expect(d.format).toBe('completion');
    expect(d.examples.map((e) => e.line)).toEqual([1, 3]);
    expect(d.labels).toBeNull();
    expect(d.skipped).toEqual([]);
    expect(d.stats.lines).toBe(2);
    expect(d.stats.tokens).toBe(d.examples.reduce((n, e) => n + e.inputIds.length, 0));
  });

  const broken = jsonl(
    good(1),
    '{"prompt": "x"', // 2
    { prompt: 'x', completion: 3 }, // 3
    good(4),
    { text: 'a', label: 'b' }, // 5
  );

  it('by default a bad line trains nothing: one error listing the problems with line numbers', () => {
    let error: unknown;
    try {
      prepareDataset(broken, tok, { maxLength: 64 });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DatasetError);
    const message = (error as DatasetError).message;
    expect(message).toMatch(/^dataset refused: 3 invalid lines\n/);
    expect(message).toMatch(/\nline 2: not valid JSON: /);
    expect(message).toContain('\nline 3: completion: expected a string, got a number');
    expect(message).toContain('\nline 5: a classification line');
    expect((error as DatasetError).problems.map((p) => p.line)).toEqual([2, 3, 5]);
  });

  it('lists only the first maxReported problems', () => {
    const text = jsonl(good(1), 'x', 'y', 'z', 'w');
    expect(() => prepareDataset(text, tok, { maxLength: 64, maxReported: 2 })).toThrow(
      /line 3: .*\n\.\.\. and 2 more$/,
    );
  });

  it('skipInvalid: the good lines train, the bad ones are reported', () => {
    const d = prepareDataset(broken, tok, { maxLength: 64, skipInvalid: true });
    expect(d.examples.map((e) => e.line)).toEqual([1, 4]);
    expect(d.skipped.map((p) => p.line)).toEqual([2, 3, 5]);
    expect(d.skippedLineCount).toBe(3);
  });

  it('counts lines the template cannot render among the problems, with their line', () => {
    const throwing = {
      encode: (t: string, o?: { addSpecialTokens?: boolean }) => tok.encode(t, o),
      escapeChat: (m: Parameters<BackboneTokenizer['escapeChat']>[0]) => tok.escapeChat(m),
      eosTokenId: tok.eosTokenId,
      padTokenId: tok.padTokenId,
      stopTokenIds: tok.stopTokenIds,
      isSpecial: (id: number) => tok.isSpecial(id),
      applyChatTemplate: (m: readonly { content: string }[], o?: { addGenerationPrompt?: boolean }) => {
        if (m.some((x) => x.content === 'boom')) throw new Error('raise_exception: boom');
        return tok.applyChatTemplate(m as never, o);
      },
    } satisfies DataTokenizer;
    const text = jsonl(
      {
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: 'yo' },
        ],
      },
      {
        messages: [
          { role: 'user', content: 'boom' },
          { role: 'assistant', content: 'yo' },
        ],
      },
    );
    expect(() => prepareDataset(text, throwing, { maxLength: 64 })).toThrow(
      /line 2: messages: the chat template failed: raise_exception: boom/,
    );
    const d = prepareDataset(text, throwing, { maxLength: 64, skipInvalid: true });
    expect(d.examples.map((e) => e.line)).toEqual([1]);
    expect(d.skipped).toEqual([
      { line: 2, field: 'messages', message: 'the chat template failed: raise_exception: boom' },
    ]);
  });

  it('refuses, even with skipInvalid, a file with no usable line or over a limit', () => {
    expect(() => prepareDataset(jsonl('x', 'y'), tok, { maxLength: 64, skipInvalid: true })).toThrow(
      DatasetError,
    );
    expect(() =>
      prepareDataset(jsonl(good(1), '{'), tok, { maxLength: 64, skipInvalid: true }),
    ).not.toThrow();
    expect(() =>
      prepareDataset(jsonl(good(1), good(2)), tok, { maxLength: 64, skipInvalid: true, maxLines: 1 }),
    ).toThrow(/line 2: more than 1 examples/);
  });

  it('classification: the label set from the data; a validation file held to it', () => {
    const train = jsonl(
      { text: 'good', label: 'pos' },
      { text: 'bad', label: 'neg' },
      { text: 'fine', label: 'pos' },
    );
    const d = prepareDataset(train, tok, { maxLength: 64 });
    expect(d.labels).toEqual(['neg', 'pos']);
    expect(d.examples.map((e) => e.classLabel)).toEqual(['pos', 'neg', 'pos']);
    const validation = jsonl({ text: 'meh', label: 'neutral' }, { text: 'ok', label: 'pos' });
    expect(() => prepareDataset(validation, tok, { maxLength: 64, labels: d.labels! })).toThrow(
      "line 1: label: 'neutral' is not one of the labels (neg, pos)",
    );
    expect(() => prepareDataset(jsonl({ text: 'a', label: 'x' }), tok, { maxLength: 64 })).toThrow(
      /at least 2 labels/,
    );
  });
});

/** Examples of given lengths (content irrelevant to batching). */
function fakeExamples(lengths: readonly number[]): TrainingExample[] {
  return lengths.map((n, i) => ({
    line: i + 1,
    inputIds: Int32Array.from({ length: n }, (_, t) => 1000 * i + t),
    labels: Int32Array.from({ length: n }, (_, t) => (t % 2 ? 7 : IGNORE_INDEX)),
    targetCount: Math.floor(n / 2),
    truncated: 'none' as const,
  }));
}

const rng = new Rng(42);
const lengths = Array.from({ length: 300 }, () => 1 + rng.int(64));

describe('batching', () => {
  const budget = 256;

  it('every batch within the token budget, every example exactly once per epoch', () => {
    for (const epoch of [0, 1, 5]) {
      for (const maxBatchSize of [Number.POSITIVE_INFINITY, 3]) {
        const plan = planEpoch(lengths, epoch, { tokenBudget: budget, seed: 7, maxBatchSize });
        for (const batch of plan) {
          const T = Math.max(...batch.map((i) => lengths[i]!));
          expect(batch.length * T).toBeLessThanOrEqual(budget);
          expect(batch.length).toBeLessThanOrEqual(maxBatchSize);
        }
        expect(plan.flat().sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i));
      }
    }
  });

  it('buckets by length: padding stays a small share of the padded tokens', () => {
    const plan = planEpoch(lengths, 0, { tokenBudget: budget, seed: 7 });
    let padded = 0;
    for (const batch of plan) padded += batch.length * Math.max(...batch.map((i) => lengths[i]!));
    const real = lengths.reduce((a, b) => a + b, 0);
    expect(padded - real).toBeLessThan(0.1 * padded);
  });

  it('same seed and epoch, same order; another seed or epoch, another order', () => {
    const opts = { tokenBudget: budget, seed: 7 };
    const a = planEpoch(lengths, 2, opts);
    expect(planEpoch(lengths, 2, opts)).toEqual(a);
    expect(planEpoch(lengths, 2, { ...opts, seed: 8 })).not.toEqual(a);
    expect(planEpoch(lengths, 3, opts)).not.toEqual(a);
    // Order within equal lengths changes too, not only the batch order.
    const members = (p: number[][]) => p.map((b) => [...b].sort((x, y) => x - y).join(',')).sort();
    expect(members(planEpoch(lengths, 2, { ...opts, seed: 8 }))).not.toEqual(members(a));
  });

  it('without shuffling: ascending length, independent of seed and epoch', () => {
    const a = planEpoch(lengths, 0, { tokenBudget: budget, shuffle: false, seed: 1 });
    expect(planEpoch(lengths, 4, { tokenBudget: budget, shuffle: false, seed: 2 })).toEqual(a);
    const flat = a.flat().map((i) => lengths[i]!);
    expect(flat).toEqual([...flat].sort((x, y) => x - y));
  });

  it('refuses an example longer than the budget', () => {
    expect(() => planEpoch([4, 300], 0, { tokenBudget: 256 })).toThrow(/example 1 has 300 tokens/);
  });

  it('collate: right padding, mask 1/0, positions, -100 labels on padding', () => {
    const examples = fakeExamples([3, 1, 2]);
    const batch = collate(examples, [2, 0], 99);
    expect(batch.size).toBe(2);
    expect(batch.length).toBe(3);
    expect([...batch.inputIds]).toEqual([2000n, 2001n, 99n, 0n, 1n, 2n]);
    expect([...batch.attentionMask]).toEqual([1n, 1n, 0n, 1n, 1n, 1n]);
    expect([...batch.positionIds]).toEqual([0n, 1n, 2n, 0n, 1n, 2n]);
    expect([...batch.labels]).toEqual([-100n, 7n, -100n, -100n, 7n, -100n]);
    expect(batch.tokens).toBe(5);
    expect(batch.targets).toBe(2);
    expect(batch.indices).toEqual([2, 0]);
  });
});

describe('BatchLoader: epochs and a resumable cursor', () => {
  const examples = fakeExamples(lengths);
  const opts = { tokenBudget: 256, seed: 3, padTokenId: 0 };

  it('walks the planned batches epoch after epoch', () => {
    const loader = new BatchLoader(examples, opts);
    const plan0 = planEpoch(lengths, 0, opts);
    const plan1 = planEpoch(lengths, 1, opts);
    const seen = [...plan0, ...plan1].map(() => loader.next());
    expect(seen.map((s) => s.batch.indices)).toEqual([...plan0, ...plan1]);
    expect(seen[plan0.length]).toMatchObject({ epoch: 1, index: 0 });
    expect(loader.cursor).toEqual({ epoch: 2, index: 0 });
  });

  it('a saved cursor reproduces the rest of the epoch and the next one exactly', () => {
    const a = new BatchLoader(examples, opts);
    for (let i = 0; i < 7; i++) a.next();
    const saved = JSON.parse(JSON.stringify(a.state()));
    expect(saved).toMatchObject({ epoch: 0, index: 7 });
    const rest = (l: BatchLoader, n: number) => Array.from({ length: n }, () => l.next());
    const n = a.batchesOf(0).length - 7 + 5;
    const expected = rest(a, n);
    const b = new BatchLoader(examples, opts, saved);
    const got = rest(b, n);
    expect(got.map((g) => [g.epoch, g.index, g.batch.indices])).toEqual(
      expected.map((g) => [g.epoch, g.index, g.batch.indices]),
    );
    expect(got.map((g) => g.batch.inputIds)).toEqual(expected.map((g) => g.batch.inputIds));
  });

  it('a cursor at the end of an epoch means the start of the next', () => {
    const loader = new BatchLoader(examples, opts);
    const n = loader.batchesOf(4).length;
    loader.restore({ epoch: 4, index: n, fingerprint: loader.fingerprint });
    expect(loader.cursor).toEqual({ epoch: 5, index: 0 });
    expect(() => loader.restore({ epoch: 4, index: n + 1, fingerprint: loader.fingerprint })).toThrow(
      /outside/,
    );
  });

  it('refuses a cursor saved over other data or options', () => {
    const state = new BatchLoader(examples, opts).state();
    expect(() => new BatchLoader(examples.slice(1), opts, state)).toThrow(/fingerprint/);
    expect(() => new BatchLoader(examples, { ...opts, seed: 4 }, state)).toThrow(/fingerprint/);
    expect(new BatchLoader(examples, opts, state).cursor).toEqual({ epoch: 0, index: 0 });
  });
});

describe('validation split', () => {
  const items = Array.from({ length: 50 }, (_, i) => `line-${i}`);

  it('is disjoint, covers everything, keeps order and is deterministic by seed', () => {
    const s = splitValidation(items, { fraction: 0.2 }, 11);
    expect(s.validation.length).toBe(10);
    expect(s.train.length).toBe(40);
    expect(new Set([...s.train, ...s.validation]).size).toBe(50);
    expect(s.train.filter((x) => s.validation.includes(x))).toEqual([]);
    expect(s.validation).toEqual(s.validationIndices.map((i) => items[i]));
    expect([...s.train].sort()).toEqual(s.train.slice().sort());
    expect(s.train).toEqual(items.filter((_, i) => !s.validationIndices.includes(i)));
    expect(splitValidation(items, { fraction: 0.2 }, 11)).toEqual(s);
    expect(splitValidation(items, { fraction: 0.2 }, 12).validationIndices).not.toEqual(s.validationIndices);
  });

  it('by count; a small positive fraction still holds one out; refuses to leave no training data', () => {
    expect(splitValidation(items, { count: 3 }, 1).validation.length).toBe(3);
    expect(splitValidation(items, { fraction: 0.001 }, 1).validation.length).toBe(1);
    expect(splitValidation(items, { fraction: 0 }, 1).validation).toEqual([]);
    expect(() => splitValidation(items, { count: 50 }, 1)).toThrow(/no training examples/);
    expect(() => splitValidation(items, { fraction: 1 }, 1)).toThrow(RangeError);
  });
});

describe('classification metrics', () => {
  const labels = ['neg', 'neutral', 'pos'];

  it('picks the lowest-loss label; NaN is worst; ties go to the earlier label', () => {
    expect(argminLabel(labels, [2.5, 0.3, 1.1])).toBe('neutral');
    expect(argminLabel(labels, [Number.NaN, 4, 4])).toBe('neutral');
    expect(argminLabel(labels, [Number.NaN, Number.NaN, Number.NaN])).toBe('neg');
    expect(() => argminLabel(labels, [1, 2])).toThrow(/2 losses for 3 labels/);
  });

  it('accuracy over the label set, per label too', () => {
    const m = classificationAccuracy(labels, [
      { gold: 'pos', losses: [3, 2, 1] }, // right
      { gold: 'pos', losses: [0.5, 2, 1] }, // wrong: neg
      { gold: 'neg', losses: [0.1, 2, 1] }, // right
      { gold: 'neutral', losses: [1, 0.9, 1] }, // right
    ]);
    expect(m).toMatchObject({ accuracy: 0.75, correct: 3, total: 4 });
    expect(m.predictions).toEqual(['pos', 'neg', 'neg', 'neutral']);
    expect(m.perLabel).toEqual({
      neg: { correct: 1, total: 1 },
      neutral: { correct: 1, total: 1 },
      pos: { correct: 1, total: 2 },
    });
    expect(classificationAccuracy(labels, []).accuracy).toBeNaN();
    expect(() => classificationAccuracy(labels, [{ gold: 'other', losses: [1, 2, 3] }])).toThrow(
      /not one of/,
    );
  });
});
