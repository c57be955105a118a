import type { Rng } from '../../util/rng.ts';
import { RankedLogits } from './ranked.ts';

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

/** The first ranked prefix tried when nothing bounds it (top_k off); doubled while it is not enough. */
const FIRST_PREFIX = 256;

/**
 * One token from a row of logits, as the parameters say; `rng` makes it reproducible from a seed.
 *
 * The draw is the one a full sort would make: candidates in descending logit (ties by id), cut to
 * top_k, softmax at the temperature, cut to the smallest prefix reaching top_p, then one uniform
 * walked down that order. No full sort is needed for it: the candidates are ranked lazily
 * (RankedLogits), only as deep as the walk goes, which is a few dozen tokens for a trained model
 * at temperature 1 (the mass sits at the top) out of a vocabulary of 151k.
 */
export function sampleToken(logits: Float32Array, p: SamplingParams, rng: Rng): number {
  if (p.temperature <= 0) return argmax(logits);
  const ranked = new RankedLogits(logits);
  const V = logits.length;
  const limit = p.topK > 0 ? Math.min(p.topK, V) : V;
  const inv = 1 / p.temperature;
  // With top_k, every candidate is known (k <= 1000): rank them all. Without, rank on demand.
  ranked.ensure(p.topK > 0 ? limit : Math.min(FIRST_PREFIX, V));
  const max = logits[ranked.at(0)]!;
  const weight = (i: number) => Math.exp((logits[ranked.at(i)]! - max) * inv);

  // The softmax's normaliser over the candidates: the top k in rank order, or every logit.
  let total = 0;
  if (p.topK > 0) for (let i = 0; i < limit; i++) total += weight(i);
  else for (let i = 0; i < V; i++) total += Math.exp((logits[i]! - max) * inv);

  const weights: number[] = []; // of the ranked prefix, in rank order
  const weightAt = (i: number) => {
    while (weights.length <= i) {
      if (weights.length >= ranked.sorted) ranked.ensure(Math.min(limit, ranked.sorted * 2));
      weights.push(weight(weights.length));
    }
    return weights[i]!;
  };

  let keep = limit;
  if (p.topP < 1) {
    let mass = 0;
    for (let i = 0; i < limit; i++) {
      mass += weightAt(i) / total;
      if (mass >= p.topP) {
        keep = i + 1;
        break;
      }
    }
  }
  let keptTotal = total;
  if (keep < limit || p.topK > 0) {
    keptTotal = 0;
    for (let i = 0; i < keep; i++) keptTotal += weightAt(i);
  }
  let u = rng.next() * keptTotal;
  for (let i = 0; i < keep; i++) {
    u -= weightAt(i);
    if (u <= 0) return ranked.at(i);
  }
  weightAt(keep - 1);
  return ranked.at(keep - 1);
}

export function argmax(xs: Float32Array): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}
