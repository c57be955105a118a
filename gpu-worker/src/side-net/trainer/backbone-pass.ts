import { type BackboneBuild, buildBackbone } from '../../backbone/build.ts';
import { openCheckpoint } from '../../backbone/checkpoint/index.ts';
import { type BackboneGraphOptions, IO } from '../../backbone/graph/emit.ts';
import { type BackboneConfig, HF_NAMES } from '../../backbone/types.ts';
import { DEFAULT_SCORE_BLOCK } from '../../graph/index.ts';
import { createSession, i64, type Session, type SessionOptions, type Tensor } from '../../runtime/index.ts';
import type { SideNetShape } from '../config.ts';
import type { Batch } from '../data/index.ts';
import { SIDE_IO } from '../steps.ts';

/** How the frozen backbone is built for training (the served backbone's kernels by default). */
export type BackboneBuildChoice = Partial<Pick<BackboneGraphOptions, 'linear' | 'embeddings'>>;

/**
 * The backbone as plain inference over a training batch: built with exactly the side net's taps,
 * no logits, fused kernels; right-padded input, no past. Its outputs are named as the side net's
 * inputs (`tap.{t}`, `final_hidden`), so they go to the training step as they are.
 */
export class BackbonePass {
  private constructor(
    readonly build: BackboneBuild,
    readonly session: Session,
    /** The side-net inputs this pass produces. */
    readonly names: readonly string[],
  ) {}

  static async open(
    modelDir: string,
    cacheDir: string,
    shape: SideNetShape,
    choice: BackboneBuildChoice = {},
    session: Partial<SessionOptions> = {},
  ): Promise<BackbonePass> {
    const build = await buildBackbone(modelDir, {
      cacheDir,
      graph: {
        ...choice,
        taps: [...shape.taps],
        logits: 'none',
        fused: true,
        kvCache: false,
        scoreBlock: DEFAULT_SCORE_BLOCK,
      },
    });
    const names = [...shape.taps.map((t) => SIDE_IO.tap(t)), SIDE_IO.finalHidden];
    // No memory arena by default: an arena would keep the pass's peak (tens of MB per layer for a
    // long batch) reserved while the side step runs; without one it goes back between the two.
    const options = { memoryArena: false, ...session };
    return new BackbonePass(build, await createSession(build.modelPath, options), names);
  }

  get config(): BackboneConfig {
    return this.build.config;
  }

  /** Taps and final hidden state (B, T, d) of a batch, by side-net input name. */
  async run(batch: Batch): Promise<Record<string, Tensor>> {
    const { size: B, length: T } = batch;
    const feeds: Record<string, Tensor> = {
      [IO.inputIds]: i64(batch.inputIds, [B, T]),
      [IO.attentionMask]: i64(batch.attentionMask, [B, T]),
      [IO.positionIds]: i64(batch.positionIds, [B, T]),
    };
    return this.session.run(feeds, this.names);
  }

  async dispose(): Promise<void> {
    await this.session.dispose();
  }
}

/** The backbone's frozen LM head (V, d): `lm_head.weight`, or the embedding table when tied. */
export async function loadLmHead(modelDir: string, config: BackboneConfig): Promise<Float32Array> {
  const source = await openCheckpoint(modelDir);
  try {
    const name = config.tieWordEmbeddings ? HF_NAMES.embed : HF_NAMES.lmHead;
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
