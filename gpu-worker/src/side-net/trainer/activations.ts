import { createHash } from 'node:crypto';
import type { Tensor } from '../../runtime/index.ts';
import {
  type Batch,
  type BatchLoader,
  collate,
  type LoadedBatch,
  type TrainingExample,
} from '../data/index.ts';
import {
  ActivationCache,
  type ActivationCacheOptions,
  type ActivationCacheReport,
  activationBytes,
} from './activation-cache.ts';
import type { BackbonePass } from './backbone-pass.ts';

/**
 * Where a training micro-batch's side-net inputs come from: the backbone, or (epochs after the
 * first, when the training set fits the budget) the fp16 activation cache filled during epoch 1.
 *
 * Whether later epochs read the cache is decided once, at the first batch past epoch 1, and kept
 * in the checkpoint: a resumed run that finds no cache (another machine) rebuilds it from epoch
 * 1's batches, which gives the same bits the uninterrupted run stored.
 */
export class ActivationSource {
  readonly report: ActivationCacheReport;
  private cache: ActivationCache | undefined;
  private checked = false;

  constructor(
    private readonly backbone: BackbonePass,
    private readonly train: readonly TrainingExample[],
    private readonly loader: BatchLoader,
    private readonly padTokenId: number,
    options: ActivationCacheOptions | undefined,
    epochs: number,
    /** The decision of the run this one resumes (null: not taken yet). */
    private decision: boolean | null,
    private readonly notes: string[],
  ) {
    const lengths = train.map((e) => e.inputIds.length);
    const bytes = activationBytes(lengths, backbone.config.hiddenSize, backbone.names.length);
    this.report = {
      enabled: !!options,
      used: decision === true,
      bytes,
      maxBytes: options?.maxBytes ?? 0,
      reason: null,
    };
    if (!options) this.report.reason = 'no activation cache configured';
    else if (epochs < 2) this.report.reason = 'one epoch: nothing to reuse';
    else if (bytes > options.maxBytes)
      this.report.reason = `the training set needs ${bytes} bytes as fp16, over the ${options.maxBytes}-byte budget`;
    else {
      const key = createHash('sha256')
        .update(JSON.stringify([backbone.build.meta.key, backbone.names, loader.fingerprint]))
        .digest('hex');
      this.cache = ActivationCache.open(
        options.dir,
        key,
        backbone.names,
        backbone.config.hiddenSize,
        lengths,
        backbone.halfNames,
      );
    }
  }

  /** Whether later epochs read the cache; null until the first batch past epoch 1. */
  get usesCache(): boolean | null {
    return this.decision;
  }

  /** The side-net inputs (tap.{t}, final_hidden) of a loaded batch, (B, T, d) each. */
  async forBatch(lb: LoadedBatch): Promise<Record<string, Tensor>> {
    if (lb.epoch > 0 && !this.checked) {
      this.checked = true;
      if (this.cache && !this.cache.complete) await this.fill();
      this.decide(this.cache !== undefined);
    }
    if (lb.epoch > 0 && this.cache) {
      this.report.used = true;
      return this.cache.read(lb.batch);
    }
    const out = await this.backbone.run(lb.batch);
    if (lb.epoch === 0 && this.cache && !this.cache.complete) this.capture(lb.batch, out);
    return out;
  }

  /** The run is over: free the disk. */
  finish(): void {
    this.cache?.remove();
    this.cache = undefined;
  }

  close(): void {
    this.cache?.close();
  }

  /** Store every epoch-1 batch the cache misses (after a resume), exactly as epoch 1 ran it. */
  private async fill(): Promise<void> {
    for (const indices of this.loader.batchesOf(0)) {
      if (!this.cache) return;
      if (indices.every((i) => this.cache!.has(i))) continue;
      const batch = collate(this.train, indices, this.padTokenId);
      this.capture(batch, await this.backbone.run(batch));
    }
    this.cache?.seal();
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
