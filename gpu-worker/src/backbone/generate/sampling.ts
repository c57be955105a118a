import type { Rng } from '../../util/rng.ts';

export interface SamplingParams {
  maxTokens: number;
  /** 0 = greedy (argmax). */
  temperature: number;
  /** Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p. 1 = off. */
  topP: number;
  /** Keep only the k most likely tokens. 0 = off. */
  topK: number;
  /** Text that ends a sequence (not included in the output). */
  stop: string[];
  /** Token ids that end a sequence (eos). */
  stopTokenIds: number[];
}

export const SAMPLING_DEFAULTS: SamplingParams = {
  maxTokens: 64,
  temperature: 0,
  topP: 1,
  topK: 0,
  stop: [],
  stopTokenIds: [],
};

/** One token from a row of logits, as the parameters say; `rng` makes it reproducible from a seed. */
export function sampleToken(logits: Float32Array, p: SamplingParams, rng: Rng): number {
  if (p.temperature <= 0) return argmax(logits);
  // Candidates by descending logit, cut by top_k first (cheap), then softmax at the temperature.
  let order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!);
  if (p.topK > 0) order = order.slice(0, p.topK);
  const max = logits[order[0]!]!;
  const weights = order.map((i) => Math.exp((logits[i]! - max) / p.temperature));
  const total = weights.reduce((s, w) => s + w, 0);
  let keep = order.length;
  if (p.topP < 1) {
    let mass = 0;
    for (let i = 0; i < order.length; i++) {
      mass += weights[i]! / total;
      if (mass >= p.topP) {
        keep = i + 1;
        break;
      }
    }
  }
  const kept = weights.slice(0, keep);
  const keptTotal = kept.reduce((s, w) => s + w, 0);
  let u = rng.next() * keptTotal;
  for (let i = 0; i < keep; i++) {
    u -= kept[i]!;
    if (u <= 0) return order[i]!;
  }
  return order[keep - 1]!;
}

export function argmax(xs: Float32Array): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}
