import { mixSeed, permutation, STREAM } from './order.ts';
import { IGNORE_INDEX, type TrainingExample } from './types.ts';

export interface BatchPlanOptions {
  /** Padded tokens per batch: B * T_padded <= tokenBudget. Must fit the longest example. */
  tokenBudget: number;
  /** Cap on B whatever the budget allows. */
  maxBatchSize: number;
  seed: number;
  /** Off for evaluation: batches in length order, no randomness. */
  shuffle: boolean;
}

export const BATCH_PLAN_DEFAULTS = {
  maxBatchSize: Number.POSITIVE_INFINITY,
  seed: 0,
  shuffle: true,
} as const satisfies Partial<BatchPlanOptions>;

/**
 * One epoch's batches as lists of example indices, a pure function of (lengths, epoch, options):
 * every example exactly once, each batch within the token budget.
 *
 * Length bucketing as fairseq does it: a seeded shuffle, then a stable sort by length (so
 * equal-length examples land in a fresh random order each epoch), then greedy packing of
 * neighbours while (B + 1) * T_padded stays within the budget, then a seeded shuffle of the
 * batches. Neighbours in length share a batch, so padding stays small.
 */
export function planEpoch(
  lengths: readonly number[],
  epoch: number,
  options: Partial<BatchPlanOptions> & Pick<BatchPlanOptions, 'tokenBudget'>,
): number[][] {
  const o = { ...BATCH_PLAN_DEFAULTS, ...options } satisfies BatchPlanOptions;
  if (!Number.isInteger(epoch) || epoch < 0) throw new RangeError(`epoch ${epoch} must be an integer >= 0`);
  if (!(o.maxBatchSize >= 1)) throw new RangeError(`maxBatchSize ${o.maxBatchSize} must be >= 1`);
  for (const [i, len] of lengths.entries()) {
    if (len > o.tokenBudget) {
      throw new RangeError(
        `example ${i} has ${len} tokens, more than the batch token budget ${o.tokenBudget}`,
      );
    }
  }
  const shuffled = o.shuffle
    ? permutation(lengths.length, mixSeed(o.seed, STREAM.examples, epoch))
    : lengths.map((_, i) => i);
  const byLength = shuffled.sort((a, b) => lengths[a]! - lengths[b]!); // stable: ties keep the shuffle

  const batches: number[][] = [];
  let batch: number[] = [];
  for (const i of byLength) {
    const padded = lengths[i]!; // ascending, so the newest is the longest
    if (batch.length > 0 && ((batch.length + 1) * padded > o.tokenBudget || batch.length >= o.maxBatchSize)) {
      batches.push(batch);
      batch = [];
    }
    batch.push(i);
  }
  if (batch.length > 0) batches.push(batch);
  if (!o.shuffle) return batches;
  return permutation(batches.length, mixSeed(o.seed, STREAM.batches, epoch)).map((b) => batches[b]!);
}

/** One epoch's micro-batches in step order, and where each optimizer step's begin. */
export interface EpochSteps {
  /** Micro-batches as example indices, each within the token budget. */
  batches: number[][];
  /** Index into `batches` of each step's first micro-batch; a step runs to the next start. */
  stepStarts: number[];
}

/**
 * One epoch as optimizer steps of `stepSize` examples each (the last may hold fewer), a pure
 * function of (lengths, epoch, options): a seeded shuffle of the examples, cut into consecutive
 * steps; inside a step, the examples go by length and are packed greedily into micro-batches
 * within the token budget (as planEpoch packs a whole epoch), so a step's padding stays small
 * whatever its size. The steps' gradients are accumulated over their micro-batches.
 */
export function planEpochSteps(
  lengths: readonly number[],
  epoch: number,
  options: Partial<BatchPlanOptions> & Pick<BatchPlanOptions, 'tokenBudget'> & { stepSize: number },
): EpochSteps {
  const o = { ...BATCH_PLAN_DEFAULTS, ...options };
  if (!(Number.isInteger(o.stepSize) && o.stepSize >= 1))
    throw new RangeError(`stepSize ${o.stepSize} must be a positive integer`);
  const order = o.shuffle
    ? permutation(lengths.length, mixSeed(o.seed, STREAM.examples, epoch))
    : lengths.map((_, i) => i);
  const batches: number[][] = [];
  const stepStarts: number[] = [];
  for (let at = 0; at < order.length; at += o.stepSize) {
    const members = order.slice(at, at + o.stepSize);
    stepStarts.push(batches.length);
    // planEpoch over the step's own lengths, unshuffled: length order, greedy packing.
    const packed = planEpoch(
      members.map((i) => lengths[i]!),
      0,
      { tokenBudget: o.tokenBudget, maxBatchSize: o.maxBatchSize, shuffle: false },
    );
    for (const b of packed) batches.push(b.map((k) => members[k]!));
  }
  return { batches, stepStarts };
}

/** Tensors of one batch, right-padded to its longest example; int64, as the graphs take them. */
export interface Batch {
  /** Indices of its examples in the list it was drawn from, in row order. */
  indices: readonly number[];
  /** B */
  size: number;
  /** T_padded */
  length: number;
  inputIds: BigInt64Array; // (B, T) pad id after each sequence
  labels: BigInt64Array; // (B, T) next-token targets, -100 on prompt and padding
  attentionMask: BigInt64Array; // (B, T) 1 = token, 0 = padding
  /** 0..T-1 on every row: right padding leaves each sequence starting at 0; pads are masked anyway. */
  positionIds: BigInt64Array; // (B, T)
  /** Real (unpadded) tokens. */
  tokens: number;
  /** Labelled positions: what the mean loss divides by. */
  targets: number;
}

export function collate(
  examples: readonly TrainingExample[],
  indices: readonly number[],
  padTokenId: number,
): Batch {
  if (indices.length === 0) throw new RangeError('collate: an empty batch');
  const rows = indices.map((i) => {
    const e = examples[i];
    if (!e) throw new RangeError(`collate: no example ${i} (of ${examples.length})`);
    return e;
  });
  const B = rows.length;
  const T = Math.max(...rows.map((e) => e.inputIds.length));
  const inputIds = new BigInt64Array(B * T).fill(BigInt(padTokenId));
  const labels = new BigInt64Array(B * T).fill(BigInt(IGNORE_INDEX));
  const attentionMask = new BigInt64Array(B * T);
  const positionIds = new BigInt64Array(B * T);
  let tokens = 0;
  let targets = 0;
  for (const [b, e] of rows.entries()) {
    const row = b * T;
    for (let t = 0; t < T; t++) positionIds[row + t] = BigInt(t);
    for (let t = 0; t < e.inputIds.length; t++) {
      inputIds[row + t] = BigInt(e.inputIds[t]!);
      labels[row + t] = BigInt(e.labels[t]!);
      attentionMask[row + t] = 1n;
    }
    tokens += e.inputIds.length;
    targets += e.targetCount;
  }
  return {
    indices: [...indices],
    size: B,
    length: T,
    inputIds,
    labels,
    attentionMask,
    positionIds,
    tokens,
    targets,
  };
}
