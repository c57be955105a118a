import {
  Graph,
  gather,
  matmul,
  reshape,
  softmaxCrossEntropy,
  toModelBytes,
  type Value,
} from '../../graph/index.ts';
import { createSession, i64, type Session, type SessionOptions, type Tensor } from '../../runtime/index.ts';
import type { SideNetShape } from '../config.ts';
import {
  type Batch,
  type ClassificationMetrics,
  classificationAccuracy,
  classificationCompletion,
  collate,
  type DataTokenizer,
  IGNORE_INDEX,
  planEpoch,
  type TrainingExample,
  toTrainingExample,
} from '../data/index.ts';
import { sideForward } from '../graph.ts';
import { lmHeadLoss } from '../loss.ts';
import { sideNetParams } from '../params.ts';
import { SIDE_IO, TRAINING_TAP_DTYPE } from '../steps.ts';

/** Token positions to score: flat indices into (B*T) and their target ids. */
const SCORE_IO = {
  rows: 'score_rows',
  targets: 'score_targets',
  nll: 'token_nll',
  loss: 'loss',
  correct: 'correct_tokens',
} as const;

/**
 * Forward-only side-net models for evaluation, fed the trainer's current parameter tensors
 * (named as in the training step) and a backbone pass's outputs:
 *
 *   loss:    side forward ─ chunked LM-head cross-entropy ─ loss ()       mean over the batch's targets
 *                                                       └─ correct ()    targets predicted exactly
 *   scoring: side forward ─ Reshape (B*T, d) ─ Gather rows (M, d) ─ @ head^T (M, V) ─ nll (M)
 *
 * The scoring model reads only the M labelled positions it is given (a label and its eos per
 * candidate), so its (M, V) logits stay small; per-row sums of its nll are -log p(completion).
 */
export class SideEvaluator {
  private constructor(
    private readonly shape: SideNetShape,
    private readonly lossSession: Session,
    private readonly scoreSession: Session,
    private readonly lmHead: Tensor,
  ) {}

  static async create(
    shape: SideNetShape,
    lmHead: Tensor,
    opts: { chunk?: number | undefined; session?: Partial<SessionOptions> } = {},
  ): Promise<SideEvaluator> {
    const loss = evalGraph(shape, 'side-net-eval-loss', (g, out, head) => {
      const labels = g.input(SIDE_IO.labels, 'int64', ['batch', 'seq']);
      const scored = lmHeadLoss(out, head, labels, { chunk: opts.chunk, gradient: false });
      g.output(scored.loss, SCORE_IO.loss);
      g.output(scored.correct, SCORE_IO.correct);
    });
    const score = evalGraph(shape, 'side-net-eval-score', (g, out, head) => {
      const rows = g.input(SCORE_IO.rows, 'int64', ['scored']);
      const targets = g.input(SCORE_IO.targets, 'int64', ['scored']);
      const picked = gather(reshape(out, [-1, shape.d]), rows, 0, 'ScoredRows'); // (M, d)
      const logits = matmul(picked, head, { transB: true }); // (M, V)
      g.output(softmaxCrossEntropy(logits, targets, IGNORE_INDEX), SCORE_IO.nll); // (M)
    });
    const session = opts.session ?? {};
    const lossSession = await createSession(toModelBytes(loss), session);
    try {
      return new SideEvaluator(shape, lossSession, await createSession(toModelBytes(score), session), lmHead);
    } catch (e) {
      await lossSession.dispose();
      throw e;
    }
  }

  /** Mean loss over the batch's labelled tokens. */
  async loss(
    params: Record<string, Tensor>,
    batch: Batch,
    backbone: Record<string, Tensor>,
  ): Promise<number> {
    return (await this.tokens(params, batch, backbone)).loss;
  }

  /** Mean loss over the batch's labelled tokens, and how many of them the head predicts exactly. */
  async tokens(
    params: Record<string, Tensor>,
    batch: Batch,
    backbone: Record<string, Tensor>,
  ): Promise<{ loss: number; correct: number }> {
    const feeds = this.feeds(params, batch, backbone);
    feeds[SIDE_IO.labels] = i64(batch.labels, [batch.size, batch.length]);
    const out = await this.lossSession.run(feeds);
    return { loss: Number(out[SCORE_IO.loss]!.data[0]), correct: Number(out[SCORE_IO.correct]!.data[0]) };
  }

  /** Summed loss of each row's labelled tokens: -log p(completion | prompt), (B). */
  async rowLosses(
    params: Record<string, Tensor>,
    batch: Batch,
    backbone: Record<string, Tensor>,
  ): Promise<number[]> {
    const rows: bigint[] = [];
    const targets: bigint[] = [];
    const owner: number[] = [];
    batch.labels.forEach((label, i) => {
      if (label === BigInt(IGNORE_INDEX)) return;
      rows.push(BigInt(i));
      targets.push(label);
      owner.push(Math.floor(i / batch.length));
    });
    const feeds = this.feeds(params, batch, backbone);
    feeds[SCORE_IO.rows] = i64(BigInt64Array.from(rows), [rows.length]);
    feeds[SCORE_IO.targets] = i64(BigInt64Array.from(targets), [targets.length]);
    const nll = (await this.scoreSession.run(feeds))[SCORE_IO.nll]!.data as Float32Array;
    const sums = new Array<number>(batch.size).fill(0);
    owner.forEach((b, k) => {
      sums[b]! += nll[k]!;
    });
    return sums;
  }

  async dispose(): Promise<void> {
    await Promise.all([this.lossSession.dispose(), this.scoreSession.dispose()]);
  }

  private feeds(params: Record<string, Tensor>, batch: Batch, backbone: Record<string, Tensor>) {
    const { size: B, length: T } = batch;
    const feeds: Record<string, Tensor> = {
      ...params,
      [SIDE_IO.finalHidden]: backbone[SIDE_IO.finalHidden]!,
      [SIDE_IO.lmHead]: this.lmHead,
      [SIDE_IO.mask]: i64(batch.attentionMask, [B, T]),
      [SIDE_IO.positions]: i64(batch.positionIds, [B, T]),
    };
    for (const t of this.shape.taps) feeds[SIDE_IO.tap(t)] = backbone[SIDE_IO.tap(t)]!;
    return feeds;
  }
}

function evalGraph(
  shape: SideNetShape,
  name: string,
  head: (g: Graph, out: Value, lmHead: Value) => void,
): Graph {
  const g = new Graph({ name });
  const seq = ['batch', 'seq'];
  const params = Object.fromEntries(
    sideNetParams(shape).map((p) => [p.name, g.input(p.name, 'float32', p.shape)]),
  );
  const { out } = sideForward(g, shape, params, {
    taps: new Map(shape.taps.map((t) => [t, g.input(SIDE_IO.tap(t), TRAINING_TAP_DTYPE, [...seq, shape.d])])),
    finalHidden: g.input(SIDE_IO.finalHidden, 'float32', [...seq, shape.d]),
    mask: g.input(SIDE_IO.mask, 'int64', seq),
    positions: g.input(SIDE_IO.positions, 'int64', seq),
  });
  head(g, out, g.input(SIDE_IO.lmHead, 'float32', [shape.vocab, shape.d]));
  return g;
}

/** What evaluation needs from the trainer: the backbone pass and the current parameters. */
export interface EvalContext {
  evaluator: SideEvaluator;
  backbone: (batch: Batch) => Promise<Record<string, Tensor>>;
  params: () => Record<string, Tensor>;
  tokenBudget: number;
  padTokenId: number;
  /** Awaited before each batch (TrainSideNetOptions.yieldPoint). */
  yieldPoint?: (() => Promise<void>) | undefined;
}

/** Batches over examples in length order (no shuffling), each within the token budget. */
function evalBatches(examples: readonly TrainingExample[], ctx: EvalContext): Batch[] {
  const lengths = examples.map((e) => e.inputIds.length);
  return planEpoch(lengths, 0, { tokenBudget: ctx.tokenBudget, shuffle: false }).map((indices) =>
    collate(examples, indices, ctx.padTokenId),
  );
}

/** Mean loss over every labelled token of `examples` (token-weighted across batches). */
export async function evaluateLoss(examples: readonly TrainingExample[], ctx: EvalContext): Promise<number> {
  return (await evaluateTokens(examples, ctx)).loss;
}

/**
 * Mean loss and mean token accuracy (the share of labelled tokens whose label is the head's
 * argmax) over every labelled token of `examples`, token-weighted across batches.
 */
export async function evaluateTokens(
  examples: readonly TrainingExample[],
  ctx: EvalContext,
): Promise<{ loss: number; accuracy: number; targets: number }> {
  let sum = 0;
  let correct = 0;
  let targets = 0;
  for (const batch of evalBatches(examples, ctx)) {
    if (batch.targets === 0) continue;
    await ctx.yieldPoint?.();
    const out = await ctx.evaluator.tokens(ctx.params(), batch, await ctx.backbone(batch));
    sum += out.loss * batch.targets;
    correct += out.correct;
    targets += batch.targets;
  }
  if (targets === 0) return { loss: Number.NaN, accuracy: Number.NaN, targets };
  return { loss: sum / targets, accuracy: correct / targets, targets };
}

/**
 * Classification by completion (data/metrics.ts): each example's prompt is completed with every
 * label (` {label}` + eos, as the data module trains it), scored by its summed loss, and the
 * argmin is the prediction. Examples without a classLabel are left out.
 */
export async function evaluateClassification(
  examples: readonly TrainingExample[],
  labels: readonly string[],
  tokenizer: Pick<DataTokenizer, 'encode' | 'eosTokenId'>,
  ctx: EvalContext,
): Promise<ClassificationMetrics> {
  const eos = tokenizer.eosTokenId;
  if (eos === undefined) throw new Error('classification accuracy: the tokenizer has no eos token');
  const completions = labels.map((l) => [
    ...tokenizer.encode(classificationCompletion(l), { addSpecialTokens: false }),
    eos,
  ]);
  const scored = examples.filter((e) => e.classLabel !== undefined);
  const candidates: TrainingExample[] = [];
  for (const e of scored) {
    const prompt = promptOf(e);
    for (const c of completions) {
      const tokens = [...prompt, ...c];
      candidates.push(
        toTrainingExample(
          tokens,
          tokens.map((_, i) => i >= prompt.length),
          tokens.length,
          e.line,
        ),
      );
    }
  }
  const losses = new Array<number>(candidates.length).fill(Number.NaN);
  for (const batch of evalBatches(candidates, ctx)) {
    await ctx.yieldPoint?.();
    const rows = await ctx.evaluator.rowLosses(ctx.params(), batch, await ctx.backbone(batch));
    batch.indices.forEach((c, b) => {
      losses[c] = rows[b]!;
    });
  }
  const K = labels.length;
  return classificationAccuracy(
    labels,
    scored.map((e, i) => ({ gold: e.classLabel!, losses: losses.slice(i * K, (i + 1) * K) })),
  );
}

/** The prompt tokens of an example: every input before its first trained token. */
function promptOf(e: TrainingExample): number[] {
  const first = e.labels.findIndex((l) => l !== IGNORE_INDEX);
  return Array.from(e.inputIds.subarray(0, first + 1));
}
