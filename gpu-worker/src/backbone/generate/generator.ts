import { i64, type Session, type Tensor, zeros } from '../../runtime/index.ts';
import { Rng } from '../../util/rng.ts';
import { IO } from '../graph/emit.ts';
import { IncrementalDecoder } from '../tokenizer/incremental.ts';
import type { BackboneConfig } from '../types.ts';
import { SAMPLING_DEFAULTS, type SamplingParams, sampleToken } from './sampling.ts';
import { StopWatcher } from './stop.ts';

/** The key/value cache of every layer, as onnxruntime tensors (B, H_kv, S, d_h). */
export type KvCache = { keys: Tensor[]; values: Tensor[] };

export interface StepInput<Cache = KvCache> {
  ids: number[][]; // (B, T)
  mask: number[][]; // (B, P+T) 1 = token
  positions: number[][]; // (B, T)
  past?: Cache | undefined;
}

export interface StepOutput<Cache = KvCache> {
  /** Logits of each row's last position (B x V). */
  lastLogits: Float32Array[];
  present: Cache;
}

/**
 * One model step over a batch (prefill or decode) with an opaque cache carried between steps:
 * the backbone alone, or the backbone with a side network (side-net/generate.ts).
 */
export interface Stepper<Cache = unknown> {
  step(input: StepInput<Cache>): Promise<StepOutput<Cache>>;
}

/** Logits of each row's last position from a (B, T|1, V) logits tensor. */
export function lastRows(logits: Tensor): Float32Array[] {
  const [B, rows, vocab] = logits.dims as [number, number, number];
  const data = logits.data as Float32Array;
  return Array.from({ length: B }, (_, b) =>
    data.subarray((b * rows + rows - 1) * vocab, (b * rows + rows) * vocab),
  );
}

/** Runs the backbone graph one step (prefill or decode) with the cache passed in and out. */
export class BackboneStepper implements Stepper<KvCache> {
  constructor(
    readonly session: Session,
    readonly cfg: BackboneConfig,
  ) {}

  /** Every graph output (taps, final state, logits if built) and the new cache. */
  async run(input: StepInput<KvCache>): Promise<{ outputs: Record<string, Tensor>; present: KvCache }> {
    const B = input.ids.length;
    const T = input.ids[0]!.length;
    const S = input.mask[0]!.length;
    const feeds: Record<string, Tensor> = {
      [IO.inputIds]: i64(input.ids.flat(), [B, T]),
      [IO.attentionMask]: i64(input.mask.flat(), [B, S]),
      [IO.positionIds]: i64(input.positions.flat(), [B, T]),
    };
    for (let l = 0; l < this.cfg.layers; l++) {
      const empty = [B, this.cfg.kvHeads, 0, this.cfg.headDim];
      feeds[IO.pastKey(l)] = input.past?.keys[l] ?? zeros('float32', empty);
      feeds[IO.pastValue(l)] = input.past?.values[l] ?? zeros('float32', empty);
    }
    const outputs = await this.session.run(feeds);
    const present: KvCache = { keys: [], values: [] };
    for (let l = 0; l < this.cfg.layers; l++) {
      present.keys.push(outputs[IO.presentKey(l)]!);
      present.values.push(outputs[IO.presentValue(l)]!);
    }
    return { outputs, present };
  }

  async step(input: StepInput<KvCache>): Promise<StepOutput<KvCache> & { outputs: Record<string, Tensor> }> {
    const { outputs, present } = await this.run(input);
    const logits = outputs[IO.logits];
    if (!logits) throw new Error('BackboneStepper: the backbone graph was built without logits');
    return { lastLogits: lastRows(logits), present, outputs };
  }
}

export interface GenerationRequest {
  prompt: number[];
  params?: Partial<SamplingParams>;
  seed?: number;
}

export type FinishReason = 'stop' | 'length' | 'eos' | 'cancelled';

export interface GenerationResult {
  tokens: number[];
  text?: string;
  finishReason: FinishReason;
}

export interface GenerationHooks {
  /**
   * Token ids to text, for stop sequences and streamed text. Each row decodes incrementally
   * (only the new tail is passed, open characters held back), so a token costs the same at any length.
   */
  detokenize?: (ids: number[]) => string;
  /** Called for every generated token, with the text it makes safe to show (may be ''). */
  onToken?: (row: number, token: number, textDelta: string) => void;
  /** Stop early (a client went away): checked between steps. */
  cancelled?: (row: number) => boolean;
  padId?: number;
}

/**
 * Batched generation. Prompts are left-padded to one length, padding masked out and positions
 * counted from each row's first real token, so a row generates what it would alone. Each step
 * runs the backbone once for the whole batch; finished rows keep a slot (their output ignored)
 * until every row is done.
 */
export async function generate<Cache>(
  stepper: Stepper<Cache>,
  requests: readonly GenerationRequest[],
  hooks: GenerationHooks = {},
): Promise<GenerationResult[]> {
  const B = requests.length;
  const params = requests.map((r) => ({ ...SAMPLING_DEFAULTS, ...r.params }) satisfies SamplingParams);
  for (const [i, r] of requests.entries()) {
    if (r.prompt.length === 0) throw new Error(`generate: request ${i} has an empty prompt`);
    const p = params[i]!;
    if (!(p.maxTokens >= 1)) throw new Error(`generate: request ${i}: maxTokens must be >= 1`);
    if (p.stop.length && !hooks.detokenize)
      throw new Error(`generate: request ${i}: stop sequences need detokenize`);
  }
  const rngs = requests.map((r) => new Rng(r.seed ?? 0));
  const watchers = params.map((p) => new StopWatcher(p.stop));
  const detokenize = hooks.detokenize;
  const decoders = detokenize ? requests.map(() => new IncrementalDecoder(detokenize)) : undefined;
  const width = Math.max(...requests.map((r) => r.prompt.length));
  const pad = hooks.padId ?? 0;
  const ids = requests.map((r) => [...new Array(width - r.prompt.length).fill(pad), ...r.prompt]);
  let mask = requests.map((r) => [
    ...new Array(width - r.prompt.length).fill(0),
    ...new Array(r.prompt.length).fill(1),
  ]);
  const positions = requests.map((r) => [
    ...new Array(width - r.prompt.length).fill(0),
    ...r.prompt.map((_, t) => t),
  ]);
  let next = requests.map((r) => r.prompt.length); // next position per row

  const results: GenerationResult[] = requests.map(() => ({ tokens: [], finishReason: 'length' }));
  const done = new Array<boolean>(B).fill(false);
  let out = await stepper.step({ ids, mask, positions });
  for (;;) {
    const chosen = out.lastLogits.map((row, b) => (done[b] ? pad : sampleToken(row, params[b]!, rngs[b]!)));
    for (let b = 0; b < B; b++) {
      if (done[b]) continue;
      const p = params[b]!;
      const r = results[b]!;
      const token = chosen[b]!;
      if (p.stopTokenIds.includes(token)) {
        finish(b, 'eos');
        continue;
      }
      r.tokens.push(token);
      let delta = '';
      if (decoders) {
        r.text = (r.text ?? '') + decoders[b]!.push(token);
        delta = watchers[b]!.push(r.text);
      }
      hooks.onToken?.(b, token, delta);
      if (watchers[b]!.stopped) finish(b, 'stop');
      else if (r.tokens.length >= p.maxTokens) finish(b, 'length');
      else if (hooks.cancelled?.(b)) finish(b, 'cancelled');
    }
    if (done.every(Boolean)) break;
    mask = mask.map((row) => [...row, 1]);
    out = await stepper.step({
      ids: chosen.map((c) => [c]),
      mask,
      positions: next.map((n) => [n]),
      past: out.present,
    });
    next = next.map((n) => n + 1);
  }
  return results;

  function finish(b: number, reason: FinishReason): void {
    done[b] = true;
    const r = results[b]!;
    r.finishReason = reason;
    if (decoders) {
      const text = (r.text ?? '') + decoders[b]!.flush();
      const tail = watchers[b]!.flush(text);
      if (tail) hooks.onToken?.(b, -1, tail);
      r.text = watchers[b]!.stopped ? text.slice(0, watchers[b]!.emittedLength) : text;
    }
  }
}
