import type { Lease } from '@ladder/adapters';
import type { GenerateRequest, Prompt, ScoreRequest, ScoreResponse } from '@ladder/schemas';
import { SAMPLING_DEFAULTS, type SamplingParams } from '../backbone/generate/index.ts';
import { IO } from '../backbone/graph/emit.ts';
import { i64, type Tensor } from '../runtime/index.ts';
import { SIDE_IO } from '../side-net/steps.ts';
import type { ReadyAdapter } from './adapters.ts';
import type { ComputeGate } from './gate.ts';
import type { ServingModel } from './model.ts';
import { stackRows } from './row-weights.ts';
import { type GenerationJob, RequestTooLargeError } from './scheduler.ts';
import { SCORE_IO } from './score-graph.ts';

/**
 * Normalizers may shorten text (NFKC folds some ligatures, accents can be stripped), so the
 * bytes-to-tokens bound below allows this much shrinking.
 */
const NORMALIZED_SHRINK = 4;
const enc = new TextEncoder();

/**
 * A prompt that cannot fit the context, refused from its byte length before it is tokenized (a
 * tokenization of megabytes would hold the event loop): it has at least
 * bytes / (maxTokenBytes x NORMALIZED_SHRINK) tokens.
 */
export function refuseOverlongPrompt(model: ServingModel, prompt: Prompt): void {
  const bytes =
    'text' in prompt
      ? enc.encode(prompt.text).byteLength
      : prompt.messages.reduce((n, m) => n + enc.encode(m.content).byteLength, 0);
  const atLeast = Math.ceil(bytes / (model.tokenizer.maxTokenBytes * NORMALIZED_SHRINK));
  const maxPos = model.config.maxPositions;
  if (atLeast > maxPos) {
    throw new RequestTooLargeError(
      `prompt is ${bytes} bytes, at least ${atLeast} tokens, over the backbone's ${maxPos} positions`,
    );
  }
}

/**
 * Text through the tokenizer, or chat messages through the backbone's chat template. A text that
 * encodes to no tokens (the empty prompt, with a tokenizer that adds no bos) starts from the
 * document boundary, as OpenAI's completions do for `prompt: ""`: the bos token, else the eos
 * (GPT's and Qwen's <|endoftext|>).
 */
export function encodePrompt(model: ServingModel, prompt: Prompt): number[] {
  refuseOverlongPrompt(model, prompt);
  if (!('text' in prompt)) return model.backbone.encodeChat(prompt.messages);
  const ids = model.tokenizer.encode(prompt.text);
  if (ids.length > 0) return ids;
  const boundary = model.tokenizer.bosTokenId ?? model.tokenizer.eosTokenId;
  if (boundary === undefined)
    throw new RangeError(
      'prompt.text: empty, and the tokenizer has neither a bos nor an eos token to start from',
    );
  return [boundary];
}

/** A validated GenerateRequest as the scheduler takes it. */
export function generationJob(
  model: ServingModel,
  req: GenerateRequest,
  adapter: Lease<ReadyAdapter> | null,
  extra: Pick<GenerationJob, 'signal' | 'onDelta'>,
): GenerationJob {
  const s = req.sampling;
  const params: SamplingParams = {
    ...SAMPLING_DEFAULTS,
    maxTokens: s.max_tokens,
    temperature: s.temperature,
    topP: s.top_p,
    topK: s.top_k,
    stop: s.stop,
    stopTokenIds: [...model.tokenizer.stopTokenIds],
  };
  return {
    requestId: req.request_id,
    tenant: req.tenant,
    prompt: encodePrompt(model, req.prompt),
    params,
    seed: s.seed ?? 0,
    adapter,
    sharePrefixCache: req.prefix_cache === 'shared',
    salt: req.cache_salt,
    ...extra,
  };
}

/**
 * One input scored by K adapters: ONE backbone pass over prompt + completion, then ONE stacked
 * side-net pass per side shape for all the adapters of that shape (none for `null`: the
 * backbone's own head), each giving log p(completion | prompt). Only the completion's positions
 * meet the LM head. `adapters[i]` is the lease for `req.adapters[i]` (null for the plain backbone).
 */
export async function scoreWithAdapters(
  model: ServingModel,
  gate: ComputeGate,
  req: ScoreRequest,
  adapters: (Lease<ReadyAdapter> | null)[],
): Promise<ScoreResponse> {
  const prompt = encodePrompt(model, req.prompt);
  const completion = model.tokenizer.encode(req.completion, { addSpecialTokens: false });
  if (completion.length === 0) throw new RangeError('completion: encodes to no tokens');
  if (prompt.length === 0)
    throw new RangeError('prompt: encodes to no tokens; nothing predicts the completion');
  const ids = [...prompt, ...completion];
  const T = ids.length;
  if (T > model.config.maxPositions) {
    throw new RangeError(
      `prompt + completion = ${T} tokens, over the backbone's ${model.config.maxPositions} positions`,
    );
  }
  const ones = new Array<number>(T).fill(1);
  const positions = ids.map((_, t) => t);
  const n = completion.length;
  // Position prompt.length - 1 + i predicts completion token i.
  const scored = i64(
    completion.map((_, i) => prompt.length - 1 + i),
    [n],
  );
  const targets = (rows: number) => i64(Array.from({ length: rows }, () => completion).flat(), [rows, n]);
  const total = (lp: Float32Array, row: number) =>
    lp.subarray(row * n, (row + 1) * n).reduce((a, b) => a + b, 0);
  const release = await gate.acquire('serve');
  try {
    const { outputs } = await model.run({ ids: [ids], mask: [ones], positions: [positions] }, 'score');
    const logprobs = new Map<string, number>(); // adapter key ('' = the backbone) -> log p
    if (adapters.includes(null)) {
      const session = await model.backboneScore();
      const out = await session.run({
        [SIDE_IO.finalHidden]: outputs[IO.finalHidden]!,
        [SIDE_IO.lmHead]: model.lmHead,
        [SCORE_IO.scorePositions]: scored,
        [SCORE_IO.targets]: targets(1),
      });
      logprobs.set('', total(out[SCORE_IO.logprobs]!.data as Float32Array, 0));
    }
    const byShape = new Map<string, ReadyAdapter[]>();
    for (const lease of adapters) {
      const a = lease?.value;
      if (!a) continue;
      const list = byShape.get(a.side.key) ?? [];
      if (!list.some((b) => b.key === a.key)) list.push(a);
      byShape.set(a.side.key, list);
    }
    for (const list of byShape.values()) {
      const side = list[0]!.side;
      model.counters.adapterRowCopies += list.length;
      const feeds: Record<string, Tensor> = {
        ...stackRows(side.shape, list),
        [SIDE_IO.finalHidden]: outputs[IO.finalHidden]!,
        [SIDE_IO.lmHead]: model.lmHead,
        [SIDE_IO.mask]: i64(ones, [1, T]),
        [SIDE_IO.positions]: i64(positions, [1, T]),
        [SCORE_IO.scorePositions]: scored,
        [SCORE_IO.targets]: targets(list.length),
      };
      for (const t of side.shape.taps) feeds[SIDE_IO.tap(t)] = outputs[IO.tap(t)]!;
      const lp = (await model.runSide(await side.score(), feeds))[SCORE_IO.logprobs]!.data as Float32Array; // (K, n)
      list.forEach((a, row) => {
        logprobs.set(a.key, total(lp, row));
      });
    }
    return {
      request_id: req.request_id,
      scores: adapters.map((lease) => ({
        adapter_id: lease ? lease.manifest.adapter_id : null,
        logprob: logprobs.get(lease?.value.key ?? '')!,
        tokens: n,
      })),
      usage: { prompt_tokens: prompt.length, completion_tokens: n * adapters.length },
    };
  } finally {
    release();
  }
}
