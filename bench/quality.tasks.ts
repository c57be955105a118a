// The real tasks of `npm run bench -- quality`, and the one scoring rule every method gets (over its full logits).

import type { LinearHook } from '../gpu-worker/src/backbone/graph/emit.ts';
import {
  BACKBONE_IO,
  type BackboneConfig,
  buildBackboneGraph,
  type TensorSource,
} from '../gpu-worker/src/backbone/index.ts';
import { add, Graph, matmul, scale, toModelBytes, type Value } from '../gpu-worker/src/graph/index.ts';
import {
  createSession,
  i64,
  type Session,
  type SessionOptions,
  type Tensor,
  zeros,
} from '../gpu-worker/src/runtime/index.ts';
import {
  argminLabel,
  type Batch,
  classificationCandidates,
  classificationPrompt,
  collate,
  type DataTokenizer,
  IGNORE_INDEX,
  planEpoch,
  prepareDataset,
  type TrainingExample,
} from '../gpu-worker/src/side-net/data/index.ts';
import {
  BackbonePass,
  LORA_TARGETS,
  type LoraTarget,
  loraName,
  QLORA_DEFAULTS,
  SIDE_IO,
  type SideNetShape,
  sideForward,
  sideNetParams,
  TRAINING_TAP_DTYPE,
} from '../gpu-worker/src/side-net/index.ts';
import {
  type ClassificationLine,
  type CompletionLine,
  genreTask,
  glossTask,
  spamTask,
} from '../scripts/pretrain/tasks.ts';

// ---------------------------------------------------------------------------------------------
// Tasks

const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join('\n');

export const TASKS = ['spam', 'genre', 'gloss'] as const;
export type TaskName = (typeof TASKS)[number];

export const METHODS = ['lst', 'xladder', 'lst_pruned', 'qlora'] as const;
export type Method = (typeof METHODS)[number];

/** One run of bench/quality.child.ts. */
export interface ChildArg {
  mode: 'train' | 'backbone' | 'ppl';
  modelDir: string;
  cacheDir: string;
  threads: number;
  task?: TaskName;
  method?: Method;
  lr?: number;
  /** Updates to train (rounded to whole epochs of the loader's plan). */
  steps?: number;
  /** Evaluations on the test lines during training, besides the last. */
  evals?: number;
  seed?: number;
  /** ppl: the pretraining work dir whose encoded streams are reused when their tokenizer matches. */
  pretrainDir?: string;
}

export interface Task {
  name: TaskName;
  kind: 'classification' | 'generation';
  /** The training lines less the dev lines. */
  train: TrainingExample[];
  /** What the trainer's own evaluation gets: the test lines with their gold completions. */
  validation: TrainingExample[];
  /** Every 7th training line, held out of training: the learning-rate sweep picks by it. */
  dev: EvalSet;
  /** A spread subset of the test lines, scored every few updates for the learning curve. */
  curve: EvalSet;
  /** The test lines (held out of pretraining and of training). */
  scored: EvalSet;
  tokenBudget: number;
  /** Greedy generation at the end, over the test lines: prompts and the text wanted. */
  prompts: { prompt: string; want: string }[];
}

/** Longest example, in tokens: emails and passages of ~320-360 characters fit. */
const MAX_LENGTH = 256;
// Every 7th line: 7 is prime to the label period of the interleaved task files (2 and 5 labels),
// so the dev lines hold every label.
const isDev = (_: unknown, i: number) => i % 7 === 3;
/**
 * Test lines scored during training (the curve): the first CURVE_LINES. The task files interleave
 * their labels, so a prefix holds every label about equally (an every-k-th pick can miss some).
 */
const CURVE_LINES = 48;

/**
 * One of the real tasks of scripts/pretrain/tasks.ts (SpamAssassin spam/ham, Brown genre, WordNet
 * word -> gloss), all held out of the backbone's pretraining, as the platform's JSONL lines.
 */
export function realTask(name: TaskName, tok: DataTokenizer): Task {
  if (name === 'gloss') {
    const { train, test } = glossTask();
    const examples = (rows: CompletionLine[]) =>
      prepareDataset(jsonl(rows), tok, { maxLength: MAX_LENGTH }).examples;
    const testExamples = examples(test);
    return {
      name,
      kind: 'generation',
      train: examples(train.filter((l, i) => !isDev(l, i))),
      validation: testExamples,
      dev: { kind: 'exact', examples: examples(train.filter(isDev)) },
      curve: { kind: 'exact', examples: testExamples.slice(0, CURVE_LINES) },
      scored: { kind: 'exact', examples: testExamples },
      tokenBudget: 512,
      prompts: test.map((l) => ({ prompt: l.prompt, want: l.completion })),
    };
  }
  const { train, test } = name === 'spam' ? spamTask() : genreTask();
  const fit = prepareDataset(jsonl(train.filter((l, i) => !isDev(l, i))), tok, { maxLength: MAX_LENGTH });
  const labels = fit.labels!;
  const labelled = (rows: ClassificationLine[]): EvalSet => ({
    kind: 'labels',
    labels,
    texts: rows.map((r) => ({
      gold: r.label,
      candidates: classificationCandidates(tok, r.text, labels, { maxLength: MAX_LENGTH }),
    })),
  });
  return {
    name,
    kind: 'classification',
    train: fit.examples,
    validation: prepareDataset(jsonl(test), tok, { maxLength: MAX_LENGTH, labels }).examples,
    dev: labelled(train.filter(isDev)),
    curve: labelled(test.slice(0, CURVE_LINES)),
    scored: labelled(test),
    tokenBudget: 1024,
    prompts: test.map((r) => ({ prompt: classificationPrompt(r.text), want: ` ${r.label}` })),
  };
}

/** SQuAD-style token F1 of a generated text against the reference (lower-cased words). */
export function tokenF1(got: string, want: string): number {
  const words = (t: string) => t.toLowerCase().match(/[a-z0-9']+/g) ?? [];
  const g = words(got);
  const w = words(want);
  if (!g.length || !w.length) return +(g.length === w.length);
  const left = new Map<string, number>();
  for (const x of w) left.set(x, (left.get(x) ?? 0) + 1);
  let common = 0;
  for (const x of g) {
    const n = left.get(x) ?? 0;
    if (n > 0) {
      common++;
      left.set(x, n - 1);
    }
  }
  if (!common) return 0;
  const precision = common / g.length;
  const recall = common / w.length;
  return (2 * precision * recall) / (precision + recall);
}

// ---------------------------------------------------------------------------------------------
// Scoring

/** A method's next-token logits of a batch, (B, T, V) flat. */
export type Logits = (batch: Batch) => Promise<Float32Array>;

/**
 * exact:  each example is right when every labelled token (answer and eos) is the argmax under
 *         teacher forcing, which is exactly when greedy generation emits the answer and stops.
 * labels: each text is scored with every label as completion; the argmin summed loss is the class.
 */
export type EvalSet =
  | { kind: 'exact'; examples: TrainingExample[] }
  | { kind: 'labels'; labels: string[]; texts: { gold: string; candidates: TrainingExample[] }[] };

export interface Metrics {
  accuracy: number;
  /** Mean loss over the labelled tokens of the examples (classification: of the gold completions). */
  evalLoss: number;
}

interface Scored {
  nll: number; // summed over the example's labelled tokens
  targets: number;
  exact: boolean;
}

export async function evaluate(
  set: EvalSet,
  logitsOf: Logits,
  tokenBudget: number,
  padTokenId: number,
): Promise<Metrics> {
  if (set.kind === 'exact') {
    const s = await scoreExamples(set.examples, logitsOf, tokenBudget, padTokenId);
    return { accuracy: mean(s.map((x) => +x.exact)), evalLoss: tokenMean(s) };
  }
  const K = set.labels.length;
  const s = await scoreExamples(
    set.texts.flatMap((t) => t.candidates),
    logitsOf,
    tokenBudget,
    padTokenId,
  );
  const gold = set.texts.map((t, i) => s[i * K + set.labels.indexOf(t.gold)]!);
  const right = set.texts.map(
    (t, i) =>
      +(
        argminLabel(
          set.labels,
          s.slice(i * K, (i + 1) * K).map((x) => x.nll),
        ) === t.gold
      ),
  );
  return { accuracy: mean(right), evalLoss: tokenMean(gold) };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const tokenMean = (s: Scored[]) =>
  s.reduce((a, x) => a + x.nll, 0) /
  Math.max(
    1,
    s.reduce((a, x) => a + x.targets, 0),
  );

/** Per example: summed loss and argmax agreement over its labelled positions. */
async function scoreExamples(
  examples: readonly TrainingExample[],
  logitsOf: Logits,
  tokenBudget: number,
  padTokenId: number,
): Promise<Scored[]> {
  const out = new Array<Scored>(examples.length);
  const plan = planEpoch(
    examples.map((e) => e.inputIds.length),
    0,
    { tokenBudget, shuffle: false },
  );
  for (const indices of plan) {
    const batch = collate(examples, indices, padTokenId);
    const logits = await logitsOf(batch);
    const T = batch.length;
    const V = logits.length / (batch.size * T);
    batch.indices.forEach((e, b) => {
      const s: Scored = { nll: 0, targets: 0, exact: true };
      for (let t = 0; t < T; t++) {
        const label = Number(batch.labels[b * T + t]);
        if (label === IGNORE_INDEX) continue;
        const row = logits.subarray((b * T + t) * V, (b * T + t + 1) * V);
        let max = Number.NEGATIVE_INFINITY;
        let arg = 0;
        for (let v = 0; v < V; v++) if (row[v]! > max) [max, arg] = [row[v]!, v];
        let sum = 0;
        for (let v = 0; v < V; v++) sum += Math.exp(row[v]! - max);
        s.nll += max + Math.log(sum) - row[label]!;
        s.targets++;
        if (arg !== label) s.exact = false;
      }
      out[e] = s;
    });
  }
  return out;
}

/**
 * Full logits of a side net: the trainer's backbone pass (same build), then
 *
 *   taps, final_hidden ─ sideForward ─ out (B, T, d) ─ @ lm_head^T ─ logits (B, T, V)
 *
 * with the parameters as inputs named as in the training step.
 */
export class SideLogits {
  private constructor(
    readonly pass: BackbonePass,
    private readonly session: Session,
    private readonly lmHead: Tensor,
    private readonly shape: SideNetShape,
  ) {}

  static async create(
    modelDir: string,
    buildCacheDir: string,
    shape: SideNetShape,
    lmHead: Tensor,
    session: Partial<SessionOptions>,
  ): Promise<SideLogits> {
    const g = new Graph({ name: 'side-net-eval-logits' });
    const seq = ['batch', 'seq'];
    const params = Object.fromEntries(
      sideNetParams(shape).map((p) => [p.name, g.input(p.name, 'float32', p.shape)]),
    );
    const { out } = sideForward(g, shape, params, {
      taps: new Map(
        shape.taps.map((t) => [t, g.input(SIDE_IO.tap(t), TRAINING_TAP_DTYPE, [...seq, shape.d])]),
      ),
      finalHidden: g.input(SIDE_IO.finalHidden, 'float32', [...seq, shape.d]),
      mask: g.input(SIDE_IO.mask, 'int64', seq),
      positions: g.input(SIDE_IO.positions, 'int64', seq),
    });
    const head = g.input(SIDE_IO.lmHead, 'float32', [shape.vocab, shape.d]);
    g.output(matmul(out, head, { transB: true }), 'logits'); // (B, T, V)
    const pass = await BackbonePass.open(modelDir, buildCacheDir, shape, {}, session);
    return new SideLogits(pass, await createSession(toModelBytes(g), session), lmHead, shape);
  }

  async logits(params: Record<string, Tensor>, batch: Batch): Promise<Float32Array> {
    const backbone = await this.pass.run(batch);
    const dims = [batch.size, batch.length];
    const feeds: Record<string, Tensor> = {
      ...params,
      [SIDE_IO.finalHidden]: backbone[SIDE_IO.finalHidden]!,
      [SIDE_IO.lmHead]: this.lmHead,
      [SIDE_IO.mask]: i64(batch.attentionMask, dims),
      [SIDE_IO.positions]: i64(batch.positionIds, dims),
    };
    for (const t of this.shape.taps) feeds[SIDE_IO.tap(t)] = backbone[SIDE_IO.tap(t)]!;
    return (await this.session.run(feeds)).logits!.data as Float32Array;
  }

  async dispose(): Promise<void> {
    await Promise.all([this.pass.dispose(), this.session.dispose()]);
  }
}

/**
 * The QLoRA model for inference: the backbone as qloraSpec builds it (4-bit linears, primitive
 * ops), its linear hook adding (alpha / r) (x A) B on every LoRA target, with A and B graph
 * inputs (fed the runner's tensors) or initializers (trained weights baked in, for generation).
 */
export async function loraEvalGraph(
  cfg: BackboneConfig,
  source: TensorSource,
  lora: { rank: number; alpha: number },
  logits: 'all' | 'last',
  weights: 'inputs' | Record<string, Float32Array>,
): Promise<Graph> {
  const hook: LinearHook = (x, y, info) => {
    if (!LORA_TARGETS.includes(info.path.split('/').at(-1) as LoraTarget)) return y;
    const g = x.graph;
    const param = (which: 'A' | 'B', dims: number[]): Value => {
      const name = loraName(info.hfName, which);
      if (weights === 'inputs') return g.input(name, 'float32', dims);
      const data = weights[name];
      if (!data) throw new Error(`loraEvalGraph: no trained weight '${name}'`);
      return g.initializer(name, 'float32', dims, data);
    };
    const a = param('A', [info.k, lora.rank]);
    const b = param('B', [lora.rank, info.n]);
    return g.scope('lora', () => {
      const down = scale(matmul(x, a, { name: 'A' }), lora.alpha / lora.rank, 'Scale'); // (..., r)
      return add(y, matmul(down, b, { name: 'B' }), 'Add'); // (..., N)
    });
  };
  const { graph } = await buildBackboneGraph(
    cfg,
    source,
    { linear: QLORA_DEFAULTS.kernel, fused: false, taps: [], logits, embeddings: 'fp32' },
    { linearHook: hook },
  );
  return graph;
}

/** Logits of a batch through a LoRA eval session (no past), LoRA tensors fed by name. */
export function loraLogits(session: Session, cfg: BackboneConfig, lora: Record<string, Tensor>): Logits {
  return async (batch) => {
    const { size: B, length: T } = batch;
    const feeds: Record<string, Tensor> = {
      ...lora,
      [BACKBONE_IO.inputIds]: i64(batch.inputIds, [B, T]),
      [BACKBONE_IO.attentionMask]: i64(batch.attentionMask, [B, T]),
      [BACKBONE_IO.positionIds]: i64(batch.positionIds, [B, T]),
    };
    for (let l = 0; l < cfg.layers; l++) {
      feeds[BACKBONE_IO.pastKey(l)] = zeros('float32', [B, cfg.kvHeads, 0, cfg.headDim]);
      feeds[BACKBONE_IO.pastValue(l)] = zeros('float32', [B, cfg.kvHeads, 0, cfg.headDim]);
    }
    return (await session.run(feeds))[BACKBONE_IO.logits]!.data as Float32Array;
  };
}
