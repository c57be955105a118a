import { type BackboneBuild, buildBackbone } from '../../backbone/build.ts';
import { openCheckpoint } from '../../backbone/checkpoint/index.ts';
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
 * The backbone as plain inference over a training batch: built with exactly the side net's taps,
 * no logits, fused kernels; right-padded input, no past. Its outputs are named as the side net's
 * inputs (`tap.{t}`, `final_hidden`), so they go to the training step as they are: the taps as
 * float16 (TRAINING_TAP_DTYPE), the final hidden state as float32.
 */
export class BackbonePass {
  private constructor(
    readonly build: BackboneBuild,
    readonly session: Session,
    /** The side-net inputs this pass produces. */
    readonly names: readonly string[],
    private readonly modelDir: string,
    /** The embedding table (V, d) rows are looked up in, unless the graph holds an 8-bit one. */
    private readonly table: Float32Array | undefined,
  ) {}

  static async open(
    modelDir: string,
    cacheDir: string,
    shape: SideNetShape,
    choice: BackboneBuildChoice = {},
    session: Partial<SessionOptions> = {},
  ): Promise<BackbonePass> {
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
    const table = lookup ? await readTable(modelDir, HF_NAMES.embed, build.config) : undefined;
    const names = [...shape.taps.map((t) => SIDE_IO.tap(t)), SIDE_IO.finalHidden];
    // No memory pattern either: from its second run on, the pass's planned layout held 43-63 MB
    // more at 2k tokens (bench/memory's LST peak 974-988 vs 1031-1037 MB), and the pass alone ran
    // no slower without it (14.0 vs 15.1 s). The training step keeps its pattern (TRAINING_SESSION).
    const options = { ...TRAINING_SESSION, memoryPattern: false, ...session };
    const s = await createSession(build.modelPath, options);
    return new BackbonePass(build, s, names, modelDir, table);
  }

  /** The outputs that come as float16: the taps. */
  get halfNames(): readonly string[] {
    return this.names.filter((n) => n !== SIDE_IO.finalHidden);
  }

  get config(): BackboneConfig {
    return this.build.config;
  }

  /** The frozen LM head (V, d): the table this pass already holds when the model ties them. */
  async lmHead(): Promise<Float32Array> {
    if (this.table && this.config.tieWordEmbeddings) return this.table;
    return loadLmHead(this.modelDir, this.config);
  }

  /** Taps and final hidden state (B, T, d) of a batch, by side-net input name. */
  /**
   * Passes whose taps held values past float16's range (clamped to +-65504 for the side net), and
   * the largest |b_t| seen in them.
   */
  readonly overflow = { passes: 0, maxAbs: 0 };

  async run(batch: Batch): Promise<Record<string, Tensor>> {
    const { size: B, length: T } = batch;
    const feeds: Record<string, Tensor> = {
      [IO.attentionMask]: i64(batch.attentionMask, [B, T]),
      [IO.positionIds]: i64(batch.positionIds, [B, T]),
    };
    if (this.table) feeds[IO.inputsEmbeds] = f32(this.lookup(batch.inputIds), [B, T, this.config.hiddenSize]);
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

  /** The embedding rows of `ids`, (n, d) flattened. */
  private lookup(ids: BigInt64Array): Float32Array {
    const { vocabSize: V, hiddenSize: d } = this.config;
    const table = this.table!;
    const rows = new Float32Array(ids.length * d);
    for (let i = 0; i < ids.length; i++) {
      const id = Number(ids[i]);
      if (!(id >= 0 && id < V))
        throw new Error(`backbone pass: token id ${id} at position ${i} is not in 0..${V - 1}`);
      rows.set(table.subarray(id * d, (id + 1) * d), i * d);
    }
    return rows;
  }

  async dispose(): Promise<void> {
    await this.session.dispose();
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
