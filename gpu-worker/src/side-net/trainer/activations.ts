import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { collectGarbage, f32, type SessionOptions, type Tensor } from '../../runtime/index.ts';
import {
  type Batch,
  type BatchLoader,
  collate,
  type LoadedBatch,
  planEpoch,
  type TrainingExample,
} from '../data/index.ts';
import {
  ActivationCache,
  type ActivationCacheOptions,
  type ActivationCacheReport,
  activationBytes,
} from './activation-cache.ts';
import type { BackbonePass, BackbonePlan } from './backbone-pass.ts';
import { TapStage } from './tap-stage.ts';

/** Outputs of at least this many bytes are collected right after their batch (collectGarbage). */
export const COLLECT_AFTER_BYTES = 32 * 2 ** 20;

/**
 * How the backbone pass and the side step share the process.
 * - 'phased' (the default): the backbone runs over a window of upcoming micro-batches, their
 *   outputs go to a TapStage on local disk, the backbone is closed, then the side steps read them.
 *   The backbone's session and the side step's working memory are never held at once, and during
 *   the pass the LM head is not held either (token rows are read from the checkpoint), so a
 *   step's peak is the larger of the two phases, not their sum. Costs one backbone load per window.
 * - 'interleaved': backbone and side step alternate per micro-batch, both sessions and the table
 *   held throughout: no loads after the first, the highest peak.
 */
export type TapSchedule =
  | {
      kind: 'phased';
      /** Where the stage's temporary folder goes (default: the OS's temp folder). */
      dir?: string;
      /** Staged bytes per window at most (one micro-batch always fits). */
      maxBytes?: number;
      /** Micro-batches per window at most. */
      maxBatches?: number;
    }
  | { kind: 'interleaved' };

export const TAP_SCHEDULE_DEFAULTS = { kind: 'phased', maxBytes: 2 * 1024 ** 3, maxBatches: 32 } as const;

/**
 * Where a training micro-batch's side-net inputs come from: the backbone (run as the TapSchedule
 * says), or (epochs after the first, when the training set fits the budget) the fp16 activation
 * cache filled during epoch 1. It also owns the backbone's loading and the frozen LM head, which
 * it drops while a phased pass runs.
 *
 * Whether later epochs read the cache is decided once, at the first batch past epoch 1, and kept
 * in the checkpoint: a resumed run that finds no cache (another machine) rebuilds it from epoch
 * 1's batches, which gives the same bits the uninterrupted run stored.
 */
export class ActivationSource {
  readonly report: ActivationCacheReport;
  /** Passes whose taps held values past float16's range, over every load of the backbone. */
  readonly overflow = { passes: 0, maxAbs: 0 };
  private cache: ActivationCache | undefined;
  private checked = false;
  private pass: BackbonePass | undefined;
  private head: Tensor | undefined;
  private readonly stage: TapStage | undefined;
  private readonly window: { maxBytes: number; maxBatches: number };
  /** Whether a pass holds the whole table (interleaved, evaluation) or reads rows from the file. */
  private holdTable: boolean;
  /** Awaited before each backbone pass (TrainSideNetOptions.yieldPoint). */
  yieldPoint: (() => Promise<void>) | undefined;

  constructor(
    private readonly plan: BackbonePlan,
    private readonly session: Partial<SessionOptions>,
    private readonly train: readonly TrainingExample[],
    private readonly loader: BatchLoader,
    private readonly padTokenId: number,
    options: ActivationCacheOptions | undefined,
    epochs: number,
    /** The decision of the run this one resumes (null: not taken yet). */
    private decision: boolean | null,
    private readonly notes: string[],
    schedule: TapSchedule = TAP_SCHEDULE_DEFAULTS,
  ) {
    const lengths = train.map((e) => e.inputIds.length);
    const bytes = activationBytes(lengths, plan.config.hiddenSize, plan.names.length);
    this.report = {
      enabled: !!options,
      used: decision === true,
      bytes,
      maxBytes: options?.maxBytes ?? 0,
      reason: null,
    };
    if (schedule.kind === 'phased') {
      const maxBytes = schedule.maxBytes ?? TAP_SCHEDULE_DEFAULTS.maxBytes;
      const maxBatches = schedule.maxBatches ?? TAP_SCHEDULE_DEFAULTS.maxBatches;
      if (!(maxBytes > 0) || !(Number.isInteger(maxBatches) && maxBatches >= 1))
        throw new RangeError(
          `tap schedule: maxBytes (${maxBytes}) must be > 0 and maxBatches (${maxBatches}) a positive integer`,
        );
      this.window = { maxBytes, maxBatches };
      this.stage = new TapStage(schedule.dir ?? tmpdir());
    } else this.window = { maxBytes: 0, maxBatches: 1 };
    this.holdTable = !this.stage;
    if (!options) this.report.reason = 'no activation cache configured';
    else if (epochs < 2) this.report.reason = 'one epoch: nothing to reuse';
    else if (bytes > options.maxBytes)
      this.report.reason = `the training set needs ${bytes} bytes as fp16, over the ${options.maxBytes}-byte budget`;
    else {
      const key = createHash('sha256')
        .update(JSON.stringify([plan.build.meta.key, plan.names, loader.fingerprint]))
        .digest('hex');
      this.cache = ActivationCache.open(
        options.dir,
        key,
        plan.names,
        plan.config.hiddenSize,
        lengths,
        plan.halfNames,
      );
    }
  }

  /** Whether later epochs read the cache; null until the first batch past epoch 1. */
  get usesCache(): boolean | null {
    return this.decision;
  }

  /** The frozen LM head (V, d) the side step reads, loaded when first asked for after a pass. */
  async lmHead(): Promise<Tensor> {
    if (!this.head) {
      const { vocabSize: V, hiddenSize: d } = this.plan.config;
      const table = this.holdTable ? await (await this.openPass()).lmHead() : await this.plan.lmHead();
      this.head = f32(table, [V, d], 'lm_head');
      if (!this.holdTable) await collectGarbage(); // the reader's buffers, before a step runs
    }
    return this.head;
  }

  /**
   * The side-net inputs (tap.{t}, final_hidden) of a loaded batch, (B, T, d) each. `remaining`:
   * micro-batches the run still takes, this one included (a window is never staged past them).
   */
  async forBatch(lb: LoadedBatch, remaining = 1): Promise<Record<string, Tensor>> {
    if (lb.epoch > 0 && !this.checked) {
      this.checked = true;
      if (this.cache && !this.cache.complete) await this.fill();
      this.decide(this.cache !== undefined);
    }
    if (lb.epoch > 0 && this.cache) {
      this.report.used = true;
      return this.cache.read(lb.batch);
    }
    if (!this.stage) {
      const out = await (await this.openPass()).run(lb.batch);
      if (lb.epoch === 0 && this.cache && !this.cache.complete) this.capture(lb.batch, out);
      return out;
    }
    const key = stageKey(lb.epoch, lb.index);
    if (!this.stage.has(key)) await this.stageWindow(lb, remaining);
    return this.stage.take(key);
  }

  /**
   * The backbone's outputs for `examples` in evaluation batches (length order, within
   * `tokenBudget`), computed now and held by the caller: for a small set evaluated again and again
   * during training (the frozen backbone gives the same outputs each time). A phased schedule
   * opens the backbone for them and closes it again.
   */
  async backboneFor(
    examples: readonly TrainingExample[],
    tokenBudget: number,
  ): Promise<{ batch: Batch; backbone: Record<string, Tensor> }[]> {
    const lengths = examples.map((e) => e.inputIds.length);
    const batches = planEpoch(lengths, 0, { tokenBudget, shuffle: false }).map((indices) =>
      collate(examples, indices, this.padTokenId),
    );
    const pass = await this.openPass();
    try {
      const out = [];
      for (const batch of batches) {
        await this.yieldPoint?.();
        out.push({ batch, backbone: await pass.run(batch) });
      }
      return out;
    } finally {
      if (this.stage) await this.closePass();
    }
  }

  /**
   * The backbone for evaluation after training: loaded with the table held (the LM head the
   * evaluator reads is then that table), and kept loaded until `close`.
   */
  async evaluationBackbone(): Promise<(batch: Batch) => Promise<Record<string, Tensor>>> {
    if (!this.holdTable) {
      await this.closePass();
      this.holdTable = true;
      this.head = undefined; // the pass's table is the head from now on
      await collectGarbage();
    }
    const pass = await this.openPass();
    return (batch) => pass.run(batch);
  }

  /** The run is over: free the disk. */
  finish(): void {
    this.cache?.remove();
    this.cache = undefined;
  }

  async close(): Promise<void> {
    await this.closePass();
    this.stage?.close();
    this.cache?.close();
  }

  /**
   * Run the backbone over `first` and the micro-batches after it (as many as the window allows and
   * the run still takes; into later epochs too, unless those will read the activation cache),
   * stage their outputs, and close the backbone again.
   */
  private async stageWindow(first: LoadedBatch, remaining: number): Promise<void> {
    const stage = this.stage!;
    stage.clear();
    const window = [
      { epoch: first.epoch, index: first.index, batch: first.batch, bytes: this.bytesOf(first.batch) },
    ];
    let total = window[0]!.bytes;
    const most = Math.min(this.window.maxBatches, Math.max(1, remaining));
    let { epoch, index } = first;
    while (window.length < most) {
      if (++index === this.loader.batchesOf(epoch).length) {
        if (this.cache) break; // later epochs read the cache
        [epoch, index] = [epoch + 1, 0];
      }
      const batch = collate(this.train, this.loader.batchesOf(epoch)[index]!, this.padTokenId);
      const bytes = this.bytesOf(batch);
      total += bytes;
      if (total > this.window.maxBytes) break;
      window.push({ epoch, index, batch, bytes });
    }
    const pass = await this.openPass();
    try {
      for (const w of window) {
        await this.yieldPoint?.();
        await this.stageOne(pass, w.epoch, w.index, w.batch);
        // The pass's outputs are dead once staged (they died with stageOne's frame): collected
        // now, not during the next pass.
        if (w.bytes >= COLLECT_AFTER_BYTES) await collectGarbage();
      }
    } finally {
      await this.closePass();
    }
  }

  private async stageOne(pass: BackbonePass, epoch: number, index: number, batch: Batch): Promise<void> {
    const out = await pass.run(batch);
    if (epoch === 0 && this.cache && !this.cache.complete) this.capture(batch, out);
    this.stage!.put(stageKey(epoch, index), out);
  }

  /** What a batch's backbone outputs take: float16 taps and the float32 final state. */
  private bytesOf(batch: Batch): number {
    const rows = batch.size * batch.length * this.plan.config.hiddenSize;
    return (
      rows * (2 * this.plan.halfNames.length + 4 * (this.plan.names.length - this.plan.halfNames.length))
    );
  }

  private async openPass(): Promise<BackbonePass> {
    if (!this.pass) {
      if (!this.holdTable && this.head) {
        this.head = undefined; // a phased pass holds no table: the head is read again after it
        await collectGarbage();
      }
      this.pass = await this.plan.open(this.session, this.holdTable ? 'held' : 'file');
    }
    return this.pass;
  }

  private async closePass(): Promise<void> {
    const pass = this.pass;
    if (!pass) return;
    this.pass = undefined;
    this.overflow.passes += pass.overflow.passes;
    this.overflow.maxAbs = Math.max(this.overflow.maxAbs, pass.overflow.maxAbs);
    await pass.dispose();
  }

  /** Store every epoch-1 batch the cache misses (after a resume), exactly as epoch 1 ran it. */
  private async fill(): Promise<void> {
    try {
      for (const indices of this.loader.batchesOf(0)) {
        if (!this.cache) return;
        if (indices.every((i) => this.cache!.has(i))) continue;
        const batch = collate(this.train, indices, this.padTokenId);
        await this.yieldPoint?.();
        this.capture(batch, await (await this.openPass()).run(batch));
      }
      this.cache?.seal();
    } finally {
      if (this.stage) await this.closePass();
    }
  }

  private capture(batch: Batch, out: Record<string, Tensor>): void {
    const problem = this.cache!.capture(batch, out);
    if (!problem) return;
    this.cache!.remove(); // a value fp16 cannot hold: recompute the backbone every epoch instead
    this.cache = undefined;
    this.report.reason = problem;
  }

  private decide(used: boolean): void {
    if (this.decision !== null && this.decision !== used) {
      this.notes.push(
        `the activation cache was ${this.decision ? '' : 'not '}used before the resume and is ${used ? '' : 'not '}now: ` +
          'later losses match the uninterrupted run within fp16 rounding, not bit for bit',
      );
    }
    this.decision = used;
  }
}

/** A staged batch's name: its place in the run. */
function stageKey(epoch: number, index: number): string {
  return `${epoch}:${index}`;
}
