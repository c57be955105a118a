import { createSession, type SessionOptions } from '../runtime/index.ts';
import { type BackboneBuild, buildBackbone } from './build.ts';
import { loadConfig } from './checkpoint/config.ts';
import {
  BackboneStepper,
  type GenerationHooks,
  type GenerationRequest,
  type GenerationResult,
  generate,
  type SamplingParams,
} from './generate/index.ts';
import type { BackboneGraphOptions } from './graph/emit.ts';
import { type BackboneTokenizer, type ChatMessage, loadTokenizer } from './tokenizer/index.ts';
import type { BackboneConfig } from './types.ts';

export interface OpenBackboneOptions {
  /** Where built models are cached (see buildBackbone). */
  cacheDir: string;
  graph?: Partial<BackboneGraphOptions>;
  session?: Partial<SessionOptions>;
}

export interface Completion extends GenerationResult {
  text: string;
  usage: { promptTokens: number; completionTokens: number };
}

/**
 * A Hugging Face model directory made ready to serve: config, tokenizer, the cached ONNX build
 * and one session over it. Text in, text out; the token-level generator stays available for
 * batching across requests.
 */
export class Backbone {
  private constructor(
    readonly dir: string,
    readonly config: BackboneConfig,
    readonly tokenizer: BackboneTokenizer,
    readonly build: BackboneBuild,
    readonly stepper: BackboneStepper,
  ) {}

  static async open(dir: string, opts: OpenBackboneOptions): Promise<Backbone> {
    const tokenizer = await loadTokenizer(dir);
    // Checked before building: a mismatched pair should not cost a build or leave one cached.
    const config = await loadConfig(dir);
    if (tokenizer.vocabSize > config.vocabSize) {
      throw new Error(
        `${dir}: tokenizer.json has ${tokenizer.vocabSize} token ids but config.json vocab_size is ` +
          `${config.vocabSize}: the embedding cannot look them all up`,
      );
    }
    const build = await buildBackbone(dir, { cacheDir: opts.cacheDir, graph: opts.graph ?? {} });
    const session = await createSession(build.modelPath, opts.session ?? {});
    return new Backbone(dir, build.config, tokenizer, build, new BackboneStepper(session, build.config));
  }

  /** Chat messages through the model's chat template, with the assistant turn opened. */
  encodeChat(messages: readonly ChatMessage[]): number[] {
    return this.tokenizer.encodeChat(messages, { addGenerationPrompt: true });
  }

  /** Token-level batched generation with this model's detokenizer and stop tokens. */
  generate(requests: readonly GenerationRequest[], hooks: GenerationHooks = {}): Promise<GenerationResult[]> {
    const stopTokenIds = [...this.tokenizer.stopTokenIds];
    return generate(
      this.stepper,
      requests.map((r) => ({ ...r, params: { stopTokenIds, ...r.params } })),
      {
        detokenize: (ids) => this.tokenizer.decode(ids, { skipSpecialTokens: true }),
        padId: this.tokenizer.padTokenId ?? 0,
        ...hooks,
      },
    );
  }

  /** One prompt (text, or chat messages) to text; `onDelta` streams the text as it is made. */
  async complete(
    prompt: string | readonly ChatMessage[],
    params: Partial<SamplingParams> = {},
    opts: { seed?: number; onDelta?: (text: string) => void } = {},
  ): Promise<Completion> {
    const ids = typeof prompt === 'string' ? this.tokenizer.encode(prompt) : this.encodeChat(prompt);
    const [result] = await this.generate([{ prompt: ids, params, seed: opts.seed ?? 0 }], {
      onToken: (_, __, delta) => delta && opts.onDelta?.(delta),
    });
    return {
      ...result!,
      text: result!.text ?? '',
      usage: { promptTokens: ids.length, completionTokens: result!.tokens.length },
    };
  }

  async dispose(): Promise<void> {
    await this.stepper.session.dispose();
  }
}
