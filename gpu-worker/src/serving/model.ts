import { basename } from 'node:path';
import { canonicalJson } from '@ladder/adapters';
import type { SideNetConfig } from '@ladder/schemas';
import { Backbone } from '../backbone/backbone.ts';
import { openCheckpoint } from '../backbone/checkpoint/index.ts';
import type { KvCache, StepInput } from '../backbone/generate/index.ts';
import { HF_NAMES } from '../backbone/types.ts';
import { toModelBytes } from '../graph/index.ts';
import { createSession, f32, type Session, type SessionOptions, type Tensor } from '../runtime/index.ts';
import { resolveSideNet, type SideNetShape } from '../side-net/config.ts';
import { buildStackedSideInferenceGraph } from '../side-net/stacked.ts';
import { buildSideInferenceGraph } from '../side-net/steps.ts';
import type { KvSpec } from './kv.ts';
import { buildBackboneScoreGraph, buildStackedScoreGraph } from './score-graph.ts';

export interface ServingModelOptions {
  backboneDir: string;
  cacheDir: string;
  name?: string;
  session?: Partial<SessionOptions>;
}

/**
 * The side net of one shape and the sessions every adapter of that shape shares: one adapter's
 * weights as inputs (`step`, rows all of one adapter), or weights stacked per row (`stacked`, one
 * pass for rows mixing adapters), and the stacked scorer.
 */
export interface SideModel {
  key: string;
  shape: SideNetShape;
  kv: KvSpec;
  step: Session;
  stacked: Session;
  score(): Promise<Session>;
  dispose(): Promise<void>;
}

/**
 * The backbone opened for serving plus everything the side networks share with it: the frozen LM
 * head as one tensor, and one session per side-net shape (adapter weights are inputs, so a new
 * adapter of a known shape costs no session). Counts every backbone run, so batching is
 * observable from outside.
 */
export class ServingModel {
  private readonly sides = new Map<string, Promise<SideModel>>();
  private backboneScorer: Promise<Session> | undefined;
  /** Backbone runs (prefills, decode steps and score passes) and side-net session runs. */
  readonly counters = {
    backboneRuns: 0,
    backboneRows: 0,
    prefillRuns: 0,
    decodeSteps: 0,
    scoreRuns: 0,
    sidePasses: 0,
    /** Adapter weight rows copied into stacked weights (rows joining or moving; none per step). */
    adapterRowCopies: 0,
  };

  private constructor(
    readonly backbone: Backbone,
    readonly name: string,
    /** (V, d) float32: what the side nets project their output with. */
    readonly lmHead: Tensor,
    readonly kv: KvSpec,
    private readonly sessionOptions: Partial<SessionOptions>,
  ) {}

  static async open(opts: ServingModelOptions): Promise<ServingModel> {
    const session = opts.session ?? {};
    const backbone = await Backbone.open(opts.backboneDir, {
      cacheDir: opts.cacheDir,
      graph: { taps: 'all', logits: 'last' },
      session,
    });
    const cfg = backbone.config;
    const source = await openCheckpoint(opts.backboneDir);
    let head: Float32Array;
    try {
      head = await source.read(cfg.tieWordEmbeddings ? HF_NAMES.embed : HF_NAMES.lmHead);
    } finally {
      await source.close();
    }
    return new ServingModel(
      backbone,
      opts.name ?? basename(opts.backboneDir),
      f32(head, [cfg.vocabSize, cfg.hiddenSize], 'lm_head'),
      { layers: cfg.layers, heads: cfg.kvHeads, headDim: cfg.headDim },
      session,
    );
  }

  get config() {
    return this.backbone.config;
  }

  get tokenizer() {
    return this.backbone.tokenizer;
  }

  /** The checkpoint fingerprint adapters are bound to (AdapterManifest.backbone.fingerprint). */
  get fingerprint(): string {
    return this.backbone.build.meta.fingerprint;
  }

  /** One backbone run (any batch, prefill or decode); counted. */
  async run(input: StepInput<KvCache>, kind: 'prefill' | 'decode' | 'score') {
    this.counters.backboneRuns++;
    this.counters.backboneRows += input.ids.length;
    if (kind === 'prefill') this.counters.prefillRuns++;
    else if (kind === 'decode') this.counters.decodeSteps++;
    else this.counters.scoreRuns++;
    return this.backbone.stepper.run(input);
  }

  /** One side-net session run (any adapters, any rows); counted. */
  runSide(session: Session, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    this.counters.sidePasses++;
    return session.run(feeds);
  }

  /** The side model for a config, built on first use (a bad config rejects with the reason). */
  side(config: SideNetConfig): Promise<SideModel> {
    const shape = resolveSideNet(this.config, config);
    const key = canonicalJson(shape.config);
    let side = this.sides.get(key);
    if (!side) {
      side = this.openSide(key, shape);
      this.sides.set(key, side);
      side.catch(() => this.sides.delete(key));
    }
    return side;
  }

  private async openSide(key: string, shape: SideNetShape): Promise<SideModel> {
    const [step, stacked] = await Promise.all([
      createSession(toModelBytes(buildSideInferenceGraph(shape)), this.sessionOptions),
      createSession(toModelBytes(buildStackedSideInferenceGraph(shape)), this.sessionOptions),
    ]);
    let scorer: Promise<Session> | undefined;
    return {
      key,
      shape,
      kv: { layers: shape.layers.length, heads: shape.heads, headDim: shape.headDim },
      step,
      stacked,
      score: () => {
        scorer ??= createSession(toModelBytes(buildStackedScoreGraph(shape)), this.sessionOptions);
        return scorer;
      },
      async dispose() {
        await step.dispose();
        await stacked.dispose();
        await (await scorer?.catch(() => undefined))?.dispose();
      },
    };
  }

  /** Log-probabilities of targets from the backbone's own head (no adapter). */
  backboneScore(): Promise<Session> {
    this.backboneScorer ??= createSession(
      toModelBytes(buildBackboneScoreGraph(this.config.hiddenSize, this.config.vocabSize)),
      this.sessionOptions,
    );
    return this.backboneScorer;
  }

  async dispose(): Promise<void> {
    for (const s of this.sides.values()) {
      const side = await s.catch(() => undefined);
      await side?.dispose();
    }
    await (await this.backboneScorer?.catch(() => undefined))?.dispose();
    await this.backbone.dispose();
  }
}
