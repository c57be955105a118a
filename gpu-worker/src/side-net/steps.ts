import { lastPosition } from '../backbone/graph/emit.ts';
import { type AdamWOptions, Graph, matmul, type TrainStepSpec, type Value } from '../graph/index.ts';
import type { SideNetShape } from './config.ts';
import { sideForward } from './graph.ts';
import { lmHeadLoss } from './loss.ts';
import { sideNetParams } from './params.ts';

/** Input and output names of the side-net graphs (shared with the trainer and the server). */
export const SIDE_IO = {
  tap: (t: number) => `tap.${t}`, // (batch, seq, d) backbone taps
  finalHidden: 'final_hidden', // (batch, seq, d)
  lmHead: 'lm_head', // (vocab, d) the backbone's frozen head, fed as a shared tensor
  labels: 'labels', // (batch, seq) int64, -100 = no loss
  mask: 'attention_mask', // (batch, seq) or (batch, past+seq) int64
  positions: 'position_ids', // (batch, seq) int64
  dropoutSeed: 'dropout_seed', // () int64
  param: (name: string) => `adapter.${name}`, // adapter weights as inference inputs
  pastKey: (j: number) => `side_past.${j}.key`, // (batch, side_heads, past, side_head_dim)
  pastValue: (j: number) => `side_past.${j}.value`,
  presentKey: (j: number) => `side_present.${j}.key`,
  presentValue: (j: number) => `side_present.${j}.value`,
  logits: 'logits', // (batch, 1, vocab): the last position
} as const;

/** What the side net's training step outputs beside its loss (TrainRunner's `metrics`). */
export const SIDE_METRICS = {
  /** Labelled tokens the head predicts exactly (argmax), of the micro-batch's targets. */
  correct: 'correct_tokens',
} as const;

/**
 * The element type of the taps the trainer's backbone pass gives (BackbonePass) and its training
 * and evaluation steps take: float16, half the memory of taps that live through a whole side step
 * (16 x 4 MB less at 2k tokens of a d=1024 backbone, in the pass's peak and the step's). The
 * down-projections widen them inside the product (halfInputLinear); the final hidden state stays
 * float32, so step 0 is still the backbone. The activation cache stored float16 already.
 */
export const TRAINING_TAP_DTYPE = 'float16';

export interface SideTrainOptions {
  /** Tokens per chunk of the LM-head loss (default: about 32 MB of logits). */
  chunk?: number;
  /**
   * Recompute each side block in the backward rather than keep its activations (default true):
   * a block is 1/r of a backbone layer wide, so running it twice costs little next to the backbone
   * pass and the LM-head loss; a 2k-token d=1024 LST step peaked at 902 MB instead of 1130.
   */
  recompute?: boolean;
  /** The taps' element type (default TRAINING_TAP_DTYPE). */
  tapDtype?: 'float32' | 'float16';
  optim?: Partial<AdamWOptions>;
}

/**
 * The side network's training step (for buildTrainStep / buildGradAccumulation): taps in, side
 * forward, frozen head, chunked cross-entropy, backward, AdamW. The backbone is not in it.
 */
export function sideTrainSpec(s: SideNetShape, opts: SideTrainOptions = {}): TrainStepSpec {
  const seq = ['batch', 'seq'] as const;
  return {
    params: sideNetParams(s).map(({ name, shape }) => ({ name, shape })),
    batch: [
      ...s.taps.map((t) => ({
        name: SIDE_IO.tap(t),
        dtype: opts.tapDtype ?? TRAINING_TAP_DTYPE,
        shape: [...seq, s.d],
      })),
      { name: SIDE_IO.finalHidden, dtype: 'float32', shape: [...seq, s.d] },
      { name: SIDE_IO.lmHead, dtype: 'float32', shape: [s.vocab, s.d] },
      { name: SIDE_IO.labels, dtype: 'int64', shape: [...seq] },
      { name: SIDE_IO.mask, dtype: 'int64', shape: [...seq] },
      { name: SIDE_IO.positions, dtype: 'int64', shape: [...seq] },
      ...(s.config.dropout > 0 ? [{ name: SIDE_IO.dropoutSeed, dtype: 'int64' as const, shape: [] }] : []),
    ],
    loss: (g, params, batch) => {
      const { out } = sideForward(g, s, params, {
        taps: new Map(s.taps.map((t) => [t, batch[SIDE_IO.tap(t)]!])),
        finalHidden: batch[SIDE_IO.finalHidden]!,
        mask: batch[SIDE_IO.mask]!,
        positions: batch[SIDE_IO.positions]!,
        dropoutSeed: batch[SIDE_IO.dropoutSeed],
        recompute: opts.recompute ?? true,
      });
      const head = lmHeadLoss(out, batch[SIDE_IO.lmHead]!, batch[SIDE_IO.labels]!, { chunk: opts.chunk });
      return { loss: head.loss, metrics: { [SIDE_METRICS.correct]: head.correct } };
    },
    metrics: [SIDE_METRICS.correct],
    optim: opts.optim,
  };
}

/**
 * The side network's decoding step with its own KV cache. Adapter weights are inputs, so every
 * adapter of one shape shares this one session: swapping adapters is feeding other tensors.
 */
export function buildSideInferenceGraph(s: SideNetShape, opts: SideDecodeOptions = {}): Graph {
  const g = new Graph({ name: 'side-net-step' });
  const params: Record<string, Value> = {};
  for (const p of sideNetParams(s)) params[p.name] = g.input(SIDE_IO.param(p.name), 'float32', p.shape);
  sideDecodeStep(g, s, params, opts);
  return g;
}

export interface SideDecodeOptions {
  /** Past this many scores a call attends in blocks (a long prompt); default DEFAULT_SCORE_BLOCK. */
  scoreBlock?: number | undefined;
}

/**
 * The body every decoding graph shares, whatever feeds the weights (one adapter's inputs, or
 * per-row slices of a stack): backbone taps, side caches and the head in; the last position's
 * logits through ONE LM-head product for all rows, and the side caches out.
 */
export function sideDecodeStep(
  g: Graph,
  s: SideNetShape,
  params: Record<string, Value>,
  opts: SideDecodeOptions = {},
): void {
  const taps = new Map(s.taps.map((t) => [t, g.input(SIDE_IO.tap(t), 'float32', ['batch', 'seq', s.d])]));
  const finalHidden = g.input(SIDE_IO.finalHidden, 'float32', ['batch', 'seq', s.d]);
  const head = g.input(SIDE_IO.lmHead, 'float32', [s.vocab, s.d]);
  const mask = g.input(SIDE_IO.mask, 'int64', ['batch', 'past+seq']);
  const positions = g.input(SIDE_IO.positions, 'int64', ['batch', 'seq']);
  const past = { keys: [] as Value[], values: [] as Value[] };
  s.layers.forEach((_, j) => {
    past.keys.push(g.input(SIDE_IO.pastKey(j), 'float32', ['batch', s.heads, 'past', s.headDim]));
    past.values.push(g.input(SIDE_IO.pastValue(j), 'float32', ['batch', s.heads, 'past', s.headDim]));
  });
  // Blocks for a long prompt only: a decoding step has one query row (CachedAttentionShape.longOnly).
  const { out, present } = sideForward(g, s, params, {
    taps,
    finalHidden,
    mask,
    positions,
    past,
    scoreBlock: opts.scoreBlock,
    longOnly: true,
  });
  const logits = g.scope('lm_head', () => matmul(lastPosition(out), head, { transB: true })); // (B, 1, V)
  g.output(logits, SIDE_IO.logits);
  for (const [j, k] of present.keys.entries()) g.output(k, SIDE_IO.presentKey(j));
  for (const [j, v] of present.values.entries()) g.output(v, SIDE_IO.presentValue(j));
}
