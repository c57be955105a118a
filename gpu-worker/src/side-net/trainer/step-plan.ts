import type { BatchLoader, DataCursor } from '../data/index.ts';

/**
 * Which micro-batches each optimizer step of a run takes, from the loader's epoch plans:
 *
 * - `batchSize` set: every epoch is ceil(N / batchSize) steps of batchSize examples, each packed
 *   into as many micro-batches as the token budget needs (BatchLoader's stepSize plan); a step's
 *   gradient is accumulated over them.
 * - otherwise: the epochs' micro-batches in a row, `microBatches` of them per step (a step may
 *   straddle two epochs; the last takes what is left).
 *
 * A pure function of the plans, so a checkpoint's step says where its data cursor must be.
 */
export class StepPlan {
  readonly totalSteps: number;
  readonly totalMicro: number;
  /** Whether some step takes more than one micro-batch: the run then accumulates gradients. */
  readonly accumulates: boolean;
  /** Micro-batches before each epoch (epochs + 1 entries). */
  private readonly epochStart: number[];
  /** Per epoch, where each step starts in it (batchSize plans). */
  private readonly stepStarts: (readonly number[])[] | undefined;
  private readonly stepsPerEpoch: number;

  constructor(
    loader: BatchLoader,
    private readonly epochs: number,
    private readonly microBatches: number,
    stepped: boolean,
  ) {
    this.epochStart = [0];
    const starts: (readonly number[])[] = [];
    let longest = 1; // micro-batches of the largest step
    for (let e = 0; e < epochs; e++) {
      const count = loader.batchesOf(e).length;
      this.epochStart.push(this.epochStart[e]! + count);
      if (!stepped) continue;
      const s = loader.stepStartsOf(e)!;
      starts.push(s);
      for (const [i, at] of s.entries()) longest = Math.max(longest, (s[i + 1] ?? count) - at);
    }
    this.totalMicro = this.epochStart[epochs]!;
    if (stepped) {
      this.stepStarts = starts;
      this.stepsPerEpoch = starts[0]!.length;
      this.totalSteps = this.stepsPerEpoch * epochs;
      this.accumulates = longest > 1;
    } else {
      this.stepStarts = undefined;
      this.stepsPerEpoch = 0;
      this.totalSteps = Math.ceil(this.totalMicro / microBatches);
      this.accumulates = microBatches > 1;
    }
  }

  /** Micro-batches the steps before `step` (0-based count of steps done) took. */
  microBefore(step: number): number {
    if (step >= this.totalSteps) return this.totalMicro;
    if (!this.stepStarts) return step * this.microBatches;
    const epoch = Math.floor(step / this.stepsPerEpoch);
    return this.epochStart[epoch]! + this.stepStarts[epoch]![step % this.stepsPerEpoch]!;
  }

  /** Micro-batches update `t` (1-based) takes. */
  microsOf(t: number): number {
    return this.microBefore(t) - this.microBefore(t - 1);
  }

  /** A data cursor as a run-wide micro-batch index. */
  indexOf(cursor: DataCursor): number {
    if (cursor.epoch >= this.epochs) return this.totalMicro + cursor.index;
    return this.epochStart[cursor.epoch]! + cursor.index;
  }
}
