import type { Lease } from '@ladder/adapters';
import type { GenerateRequest, Prompt, ScoreRequest, ScoreResponse } from '@ladder/schemas';
import { SAMPLING_DEFAULTS, type SamplingParams } from '../backbone/generate/index.ts';
import { i64, type Tensor } from '../runtime/index.ts';
import { SIDE_IO } from '../side-net/steps.ts';
import type { ReadyAdapter } from './adapters.ts';
import type { ComputeGate } from './gate.ts';
import type { ServingModel } from './model.ts';
import type { GenerationJob } from './scheduler.ts';
import { SCORE_IO } from './score-graph.ts';

/** Text through the tokenizer, or chat messages through the backbone's chat template. */
export function encodePrompt(model: ServingModel, prompt: Prompt): number[] {
  return 'text' in prompt ? model.tokenizer.encode(prompt.text) : model.backbone.encodeChat(prompt.messages);
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
    salt: req.cache_salt,
    ...extra,
  };
}

/**
 * One input scored by K adapters: ONE backbone pass over prompt + completion, then one side-net
 * pass per adapter (none for `null`: the backbone's own head) giving log p(completion | prompt).
 * `adapters[i]` is the lease for `req.adapters[i]` (null for the plain backbone).
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
  const ids = [...prompt, ...completion];
  const T = ids.length;
  if (T > model.config.maxPositions) {
    throw new RangeError(
      `prompt + completion = ${T} tokens, over the backbone's ${model.config.maxPositions} positions`,
    );
  }
  const ones = new Array<number>(T).fill(1);
  const positions = ids.map((_, t) => t);
  const targets = i64([...ids.slice(1), 0], [1, T]); // position t predicts token t + 1
  const release = await gate.acquire('serve');
  try {
    const { outputs } = await model.run({ ids: [ids], mask: [ones], positions: [positions] }, 'score');
    const done = new Map<string, number>();
    const scores: ScoreResponse['scores'] = [];
    for (const lease of adapters) {
      const key = lease?.value.key ?? '';
      let logprob = done.get(key);
      if (logprob === undefined) {
        let feeds: Record<string, Tensor>;
        let session: Awaited<ReturnType<ServingModel['backboneScore']>>;
        if (!lease) {
          session = await model.backboneScore();
          feeds = { [SIDE_IO.finalHidden]: outputs.final_hidden!, [SIDE_IO.lmHead]: model.lmHead };
        } else {
          const a = lease.value;
          session = await a.side.score();
          feeds = {
            ...a.tensors,
            [SIDE_IO.finalHidden]: outputs.final_hidden!,
            [SIDE_IO.lmHead]: model.lmHead,
            [SIDE_IO.mask]: i64(ones, [1, T]),
            [SIDE_IO.positions]: i64(positions, [1, T]),
          };
          for (const t of a.side.shape.taps) feeds[SIDE_IO.tap(t)] = outputs[`tap.${t}`]!;
        }
        const lp = (await session.run({ ...feeds, [SCORE_IO.targets]: targets }))[SCORE_IO.logprobs]!
          .data as Float32Array;
        logprob = 0;
        for (let t = prompt.length - 1; t < T - 1; t++) logprob += lp[t]!;
        done.set(key, logprob);
      }
      scores.push({
        adapter_id: lease ? lease.manifest.adapter_id : null,
        logprob,
        tokens: completion.length,
      });
    }
    return {
      request_id: req.request_id,
      scores,
      usage: { prompt_tokens: prompt.length, completion_tokens: completion.length * adapters.length },
    };
  } finally {
    release();
  }
}
