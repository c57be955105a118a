import {
  BATCH_PLAN_DEFAULTS,
  type Batch,
  type BatchPlanOptions,
  collate,
  type EpochSteps,
  planEpoch,
  planEpochSteps,
} from './batching.ts';
import type { TrainingExample } from './types.ts';

/** Where the NEXT batch comes from: batch `index` of epoch `epoch`'s plan. */
export interface DataCursor {
  epoch: number;
  index: number;
}

/** What a checkpoint stores: the cursor, and what it is a cursor into. */
export interface LoaderState extends DataCursor {
  /** Hash of the examples' tokens and the plan options; a resume onto other data is refused. */
  fingerprint: string;
}

export interface BatchLoaderOptions extends BatchPlanOptions {
  padTokenId: number;
  /**
   * Examples per optimizer step: each epoch is planned as steps of this many examples
   * (planEpochSteps), their micro-batches in step order. Undefined: planEpoch's packing of the
   * whole epoch, one step per micro-batch (stepsOf gives no boundaries then).
   */
  stepSize?: number | undefined;
}

export interface LoadedBatch {
  batch: Batch;
  /** The cursor this batch was read at. */
  epoch: number;
  index: number;
  /** Batches in this epoch. */
  epochBatches: number;
}

/**
 * Batches epoch after epoch from a fixed example list. The order is planEpoch's pure function of
 * (seed, epoch), so a cursor saved with a checkpoint reproduces the rest of the run exactly.
 */
export class BatchLoader {
  readonly fingerprint: string;
  private readonly options: BatchLoaderOptions;
  private readonly lengths: number[];
  private plan: ({ epoch: number } & EpochSteps) | undefined;
  private position: DataCursor = { epoch: 0, index: 0 };

  constructor(
    private readonly examples: readonly TrainingExample[],
    options: Partial<BatchLoaderOptions> & Pick<BatchLoaderOptions, 'tokenBudget' | 'padTokenId'>,
    resume?: LoaderState,
  ) {
    if (examples.length === 0) throw new RangeError('BatchLoader: no examples');
    this.options = { ...BATCH_PLAN_DEFAULTS, ...options };
    this.lengths = examples.map((e) => e.inputIds.length);
    this.fingerprint = fingerprint(examples, this.options);
    if (resume) this.restore(resume);
  }

  get cursor(): DataCursor {
    return { ...this.position };
  }

  state(): LoaderState {
    return { ...this.position, fingerprint: this.fingerprint };
  }

  /** Moves to a saved position; refuses a state taken over other examples or options. */
  restore(state: LoaderState): void {
    if (state.fingerprint !== this.fingerprint) {
      throw new Error(
        `BatchLoader: the saved cursor belongs to other data or batching options (fingerprint ${state.fingerprint}, this loader ${this.fingerprint})`,
      );
    }
    const { epoch, index } = state;
    if (!Number.isInteger(epoch) || epoch < 0) throw new RangeError(`cursor epoch ${epoch} is invalid`);
    const n = this.batchesOf(epoch).length;
    if (!Number.isInteger(index) || index < 0 || index > n) {
      throw new RangeError(`cursor index ${index} is outside epoch ${epoch} (0..${n})`);
    }
    this.position = index === n ? { epoch: epoch + 1, index: 0 } : { epoch, index };
  }

  /** This epoch's batches as example indices (the plan; no tensors). */
  batchesOf(epoch: number): readonly (readonly number[])[] {
    return this.planOf(epoch).batches;
  }

  /** Where this epoch's optimizer steps begin, as indices into batchesOf (stepSize plans only). */
  stepStartsOf(epoch: number): readonly number[] | undefined {
    return this.options.stepSize === undefined ? undefined : this.planOf(epoch).stepStarts;
  }

  private planOf(epoch: number): EpochSteps {
    if (this.plan?.epoch !== epoch) {
      const { stepSize } = this.options;
      this.plan = {
        epoch,
        ...(stepSize === undefined
          ? { batches: planEpoch(this.lengths, epoch, this.options), stepStarts: [] }
          : planEpochSteps(this.lengths, epoch, { ...this.options, stepSize })),
      };
    }
    return this.plan;
  }

  next(): LoadedBatch {
    const { epoch, index } = this.position;
    const batches = this.batchesOf(epoch);
    const batch = collate(this.examples, batches[index]!, this.options.padTokenId);
    this.position =
      index + 1 === batches.length ? { epoch: epoch + 1, index: 0 } : { epoch, index: index + 1 };
    return { batch, epoch, index, epochBatches: batches.length };
  }
}

/** FNV-1a (two 32-bit lanes) over every example's tokens and labels and the plan options. */
function fingerprint(examples: readonly TrainingExample[], o: BatchLoaderOptions): string {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  const feed = (v: number) => {
    a = Math.imul(a ^ (v & 0xffffffff), 0x01000193);
    b = Math.imul(b ^ ((v >>> 0) + 0x9e3779b9), 0x01000193);
  };
  feed(examples.length);
  for (const e of examples) {
    feed(e.inputIds.length);
    for (const id of e.inputIds) feed(id);
    for (const l of e.labels) feed(l);
  }
  const plan = [o.tokenBudget, o.maxBatchSize, o.seed, o.shuffle, o.padTokenId];
  const opts = JSON.stringify(o.stepSize === undefined ? plan : [...plan, o.stepSize]);
  for (let i = 0; i < opts.length; i++) feed(opts.charCodeAt(i));
  return (a >>> 0).toString(16).padStart(8, '0') + (b >>> 0).toString(16).padStart(8, '0');
}
