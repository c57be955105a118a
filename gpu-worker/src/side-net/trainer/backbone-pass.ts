import { type BackboneBuild, buildBackbone } from '../../backbone/build.ts';
import { type CheckpointSource, openCheckpoint } from '../../backbone/checkpoint/index.ts';
import { type BackboneGraphOptions, IO } from '../../backbone/graph/emit.ts';
import { type BackboneConfig, HF_NAMES } from '../../backbone/types.ts';
import { DEFAULT_SCORE_BLOCK } from '../../graph/index.ts';
import {
  createSession,
  f32,
  i64,
  type Session,
  type SessionOptions,
  type Tensor,
  TRAINING_SESSION,
  toScalar,
} from '../../runtime/index.ts';
import { HALF_MAX } from '../../util/half.ts';
import type { SideNetShape } from '../config.ts';
import type { Batch } from '../data/index.ts';
import { SIDE_IO, TRAINING_TAP_DTYPE } from '../steps.ts';

/** How the frozen backbone is built for training (the served backbone's kernels by default). */
export type BackboneBuildChoice = Partial<Pick<BackboneGraphOptions, 'linear' | 'embeddings'>>;

/**
 * The side net's backbone, built (or found in the build cache) but not yet loaded: what a pass
 * will produce, and `open` to load it. The trainer opens and closes the pass around each window of
 * micro-batches (TapSchedule), so the backbone's session and the side step's never take memory at
 * the same time.
 */
export class BackbonePlan {
  private constructor(
    readonly build: BackboneBuild,
    /** The side-net inputs a pass produces. */
    readonly names: readonly string[],
    private readonly modelDir: string,
    /** Token rows are looked up in JS (`inputs_embeds`), not in the graph. */
    private readonly lookup: boolean,
  ) {}

  static async prepare(
    modelDir: string,
    cacheDir: string,
    shape: SideNetShape,
    choice: BackboneBuildChoice = {},
  ): Promise<BackbonePlan> {
    // Token rows are looked up here, not in the graph (unless 8-bit embeddings were chosen): the
    // table is then held once, and for a tied model it is also the LM head the side step reads.
    const lookup = choice.embeddings !== 'int8';
    const build = await buildBackbone(modelDir, {
      cacheDir,
      graph: {
        ...choice,
        embeddings: lookup ? 'input' : 'int8',
        taps: [...shape.taps],
        tapDtype: TRAINING_TAP_DTYPE,
        logits: 'none',
        fused: true,
        kvCache: false,
        scoreBlock: DEFAULT_SCORE_BLOCK,
        blocks: 'always',
      },
    });
    const names = [...shape.taps.map((t) => SIDE_IO.tap(t)), SIDE_IO.finalHidden];
    return new BackbonePlan(build, names, modelDir, lookup);
  }

  get config(): BackboneConfig {
    return this.build.config;
  }

  /** The outputs that come as float16: the taps. */
  get halfNames(): readonly string[] {
    return this.names.filter((n) => n !== SIDE_IO.finalHidden);
  }

  /** The frozen LM head (V, d), read from the checkpoint. */
  lmHead(): Promise<Float32Array> {
    return loadLmHead(this.modelDir, this.config);
  }

  /**
   * Load the pass. `rows`: where token rows come from when they are looked up in JS: 'held' reads
   * the whole (V, d) table into memory (shared with the LM head of a tied model: `lmHead`), 'file'
   * reads each batch's rows from the checkpoint, so the pass holds no table at all.
   */
  async open(session: Partial<SessionOptions> = {}, rows: 'held' | 'file' = 'held'): Promise<BackbonePass> {
    const { config } = this;
    let table: RowTable | undefined;
    if (this.lookup && rows === 'held') table = await readTable(this.modelDir, HF_NAMES.embed, config);
    else if (this.lookup) table = await openCheckpoint(this.modelDir);
    try {
      // No memory pattern either: from its second run on, the pass's planned layout held 43-63 MB
      // more at 2k tokens (bench/memory's LST peak 974-988 vs 1031-1037 MB), and the pass alone ran
      // no slower without it (14.0 vs 15.1 s). The training step keeps its pattern (TRAINING_SESSION).
      const options = { ...TRAINING_SESSION, memoryPattern: false, ...session };
      const s = await createSession(this.build.modelPath, options);
      return new BackbonePass(this, s, table);
    } catch (err) {
      if (table && !(table instanceof Float32Array)) await table.close();
      throw err;
    }
  }
}

/** Where a pass looks token rows up: the table in memory, or the checkpoint's file. */
type RowTable = Float32Array | CheckpointSource;

/**
 * The backbone as plain inference over a training batch: built with exactly the side net's taps,
 * no logits, fused kernels; right-padded input, no past. Its outputs are named as the side net's
 * inputs (`tap.{t}`, `final_hidden`), so they go to the training step as they are: the taps as
 * float16 (TRAINING_TAP_DTYPE), the final hidden state as float32.
 */
export class BackbonePass {
  constructor(
    readonly plan: BackbonePlan,
    readonly session: Session,
    /** The embedding table (V, d) rows are looked up in, unless the graph holds an 8-bit one. */
    private readonly table: RowTable | undefined,
  ) {}

  /** Prepare and open in one go, with the table held (evaluation, benchmarks, tests). */
  static async open(
    modelDir: string,
    cacheDir: string,
    shape: SideNetShape,
    choice: BackboneBuildChoice = {},
    session: Partial<SessionOptions> = {},
  ): Promise<BackbonePass> {
    return (await BackbonePlan.prepare(modelDir, cacheDir, shape, choice)).open(session);
  }

  get build(): BackboneBuild {
    return this.plan.build;
  }

  /** The side-net inputs this pass produces. */
  get names(): readonly string[] {
    return this.plan.names;
  }

  /** The outputs that come as float16: the taps. */
  get halfNames(): readonly string[] {
    return this.plan.halfNames;
  }

  get config(): BackboneConfig {
    return this.build.config;
  }

  /** The frozen LM head (V, d): the table this pass already holds when the model ties them. */
  async lmHead(): Promise<Float32Array> {
    if (this.table instanceof Float32Array && this.config.tieWordEmbeddings) return this.table;
    return this.plan.lmHead();
  }

  /**
   * Passes whose taps held values past float16's range (clamped to +-65504 for the side net), and
   * the largest |b_t| seen in them.
   */
  readonly overflow = { passes: 0, maxAbs: 0 };

  /** Taps and final hidden state (B, T, d) of a batch, by side-net input name. */
  async run(batch: Batch): Promise<Record<string, Tensor>> {
    const { size: B, length: T } = batch;
    const feeds: Record<string, Tensor> = {
      [IO.attentionMask]: i64(batch.attentionMask, [B, T]),
      [IO.positionIds]: i64(batch.positionIds, [B, T]),
    };
    if (this.table)
      feeds[IO.inputsEmbeds] = f32(await this.lookup(batch.inputIds), [B, T, this.config.hiddenSize]);
    else feeds[IO.inputIds] = i64(batch.inputIds, [B, T]);
    const { [IO.tapAbsMax]: absMax, ...inputs } = await this.session.run(feeds, [
      ...this.names,
      IO.tapAbsMax,
    ]);
    const biggest = toScalar(absMax!, IO.tapAbsMax);
    if (!(biggest <= HALF_MAX)) {
      this.overflow.passes++;
      this.overflow.maxAbs = Math.max(this.overflow.maxAbs, biggest);
    }
    return inputs;
  }

  /** The embedding rows of `ids`, (n, d) flattened: from the held table, or read from the file. */
  private async lookup(ids: BigInt64Array): Promise<Float32Array> {
    const { vocabSize: V, hiddenSize: d } = this.config;
    const table = this.table!;
    const rows = new Float32Array(ids.length * d);
    const read = new Map<number, Float32Array>(); // each distinct token read once per batch
    for (let i = 0; i < ids.length; i++) {
      const id = Number(ids[i]);
      if (!(id >= 0 && id < V))
        throw new Error(`backbone pass: token id ${id} at position ${i} is not in 0..${V - 1}`);
      if (table instanceof Float32Array) {
        rows.set(table.subarray(id * d, (id + 1) * d), i * d);
        continue;
      }
      let row = read.get(id);
      if (!row) {
        row = await table.readRows(HF_NAMES.embed, id, 1);
        read.set(id, row);
      }
      rows.set(row, i * d);
    }
    return rows;
  }

  async dispose(): Promise<void> {
    await this.session.dispose();
    if (this.table && !(this.table instanceof Float32Array)) await this.table.close();
  }
}

/** The backbone's frozen LM head (V, d): `lm_head.weight`, or the embedding table when tied. */
export async function loadLmHead(modelDir: string, config: BackboneConfig): Promise<Float32Array> {
  return readTable(modelDir, config.tieWordEmbeddings ? HF_NAMES.embed : HF_NAMES.lmHead, config);
}

/** A (V, d) table of the checkpoint, checked against the config. */
async function readTable(modelDir: string, name: string, config: BackboneConfig): Promise<Float32Array> {
  const source = await openCheckpoint(modelDir);
  try {
    const data = await source.read(name);
    if (data.length !== config.vocabSize * config.hiddenSize) {
      throw new Error(
        `${modelDir}: ${name} has ${data.length} values, not vocab ${config.vocabSize} x hidden ${config.hiddenSize}`,
      );
    }
    return data;
  } finally {
    await source.close();
  }
}
