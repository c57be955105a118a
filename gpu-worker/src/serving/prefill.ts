import { lastRows } from '../backbone/generate/index.ts';
import { IO } from '../backbone/graph/emit.ts';
import type { Tensor } from '../runtime/index.ts';
import { PackedKv, type RowKv } from './kv.ts';
import type { ServingModel } from './model.ts';
import { concatSpans, type PromptActs, type SpanActs } from './prefix-cache.ts';

/** A prompt to prefill, and the results of its first `cached.tokens` positions when the cache had them. */
export interface PrefillRow {
  prompt: readonly number[];
  cached?: { acts: SpanActs; tokens: number } | undefined;
}

/**
 * One backbone run over several prompts, each from where its cached prefix ends: the cached KV
 * goes in as the past, only the rest runs. Rows are padded on the left of both parts, and the
 * mask and positions say where each row's real tokens are:
 *
 *   columns    | past: P = max cached      | new: T = max (len - cached)     |
 *   row b      | pad ... | cached_b tokens | pad ... | len_b - cached_b tokens |
 *   positions                                0 ...   | cached_b, cached_b + 1 ...
 *
 * The attention bias reads the mask, so padding in the middle blocks like padding at the start.
 * Returns each prompt's results, unpadded, cached part and new part joined.
 */
export async function backbonePrefill(
  model: ServingModel,
  rows: readonly PrefillRow[],
): Promise<PromptActs[]> {
  const d = model.config.hiddenSize;
  const pad = model.tokenizer.padTokenId ?? 0;
  const past = rows.map((r) => r.cached?.tokens ?? 0);
  const fresh = rows.map((r, b) => r.prompt.length - past[b]!);
  const P = Math.max(...past);
  const T = Math.max(...fresh);
  const ids = rows.map((r, b) => [...new Array<number>(T - fresh[b]!).fill(pad), ...r.prompt.slice(past[b])]);
  const mask = rows.map((_, b) => [
    ...new Array<number>(P - past[b]!).fill(0),
    ...new Array<number>(past[b]!).fill(1),
    ...new Array<number>(T - fresh[b]!).fill(0),
    ...new Array<number>(fresh[b]!).fill(1),
  ]);
  const positions = rows.map((_, b) => [
    ...new Array<number>(T - fresh[b]!).fill(0),
    ...Array.from({ length: fresh[b]! }, (_, t) => past[b]! + t),
  ]);
  const pastKv =
    P > 0
      ? PackedKv.pack(
          model.kv,
          rows.map((r) => r.cached?.acts.bb ?? emptyRow(model.kv.layers)),
        ).tensors()
      : undefined;
  const { outputs, present } = await model.run({ ids, mask, positions, past: pastKv }, 'prefill');
  // The new columns of each row are the last `fresh` of the present cache.
  const kv = PackedKv.fromTensors(model.kv, fresh, present.keys, present.values);
  const last = lastRows(outputs[IO.logits]!);
  const cut = (t: Tensor, b: number, len: number) =>
    (t.data as Float32Array).slice((b * T + T - len) * d, (b * T + T) * d); // (len, d)
  return rows.map((r, b) => {
    const taps = new Map<number, Float32Array>();
    for (let t = 0; t <= model.config.layers; t++) taps.set(t, cut(outputs[IO.tap(t)]!, b, fresh[b]!));
    const computed: SpanActs = {
      bb: kv.row(b),
      taps,
      finalHidden: cut(outputs[IO.finalHidden]!, b, fresh[b]!),
    };
    const whole = r.cached ? concatSpans(model.kv, [r.cached.acts, computed]) : computed;
    return { ...whole, lastLogits: last[b]!.slice() };
  });
}

function emptyRow(layers: number): RowKv {
  const none = () => Array.from({ length: layers }, () => new Float32Array(0));
  return { len: 0, keys: none(), values: none() };
}
