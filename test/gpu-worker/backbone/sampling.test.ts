import { describe, expect, it } from 'vitest';
import { RankedLogits } from '../../../gpu-worker/src/backbone/generate/ranked.ts';
import { SAMPLING_DEFAULTS, sampleToken } from '../../../gpu-worker/src/backbone/generate/sampling.ts';
import { Rng } from '../../../gpu-worker/src/util/rng.ts';

const orders = new WeakMap<Float32Array, number[]>();
function fullOrder(logits: Float32Array): number[] {
  let ids = orders.get(logits);
  if (!ids) {
    ids = [...logits.keys()].sort((a, b) => (logits[b]! !== logits[a]! ? logits[b]! - logits[a]! : a - b));
    orders.set(logits, ids);
  }
  return ids;
}

/**
 * The reference: the whole vocabulary sorted (descending logit, ties by id), cut to top_k, softmax
 * at the temperature, cut to the smallest prefix whose mass reaches top_p, one uniform walked down.
 */
function referenceSample(
  logits: Float32Array,
  o: { temperature: number; topK: number; topP: number },
  u01: number,
): number {
  const ids = fullOrder(logits);
  const cands = o.topK > 0 ? ids.slice(0, o.topK) : ids;
  const top = logits[cands[0]!]!;
  const w = cands.map((i) => Math.exp((logits[i]! - top) / o.temperature));
  const z = w.reduce((s, x) => s + x, 0);
  let n = cands.length;
  if (o.topP < 1) {
    let acc = 0;
    n = cands.findIndex((_, i) => {
      acc += w[i]! / z;
      return acc >= o.topP;
    });
    n = n < 0 ? cands.length : n + 1;
  }
  let rest = u01 * w.slice(0, n).reduce((s, x) => s + x, 0);
  for (let i = 0; i < n; i++) {
    rest -= w[i]!;
    if (rest <= 0) return cands[i]!;
  }
  return cands[n - 1]!;
}

/** Logits shaped like a model's: a few strong candidates over a long flat tail, some exact ties. */
function modelLikeLogits(V: number, seed: number, spread: number): Float32Array {
  const r = new Rng(seed);
  const out = new Float32Array(V);
  for (let i = 0; i < V; i++) out[i] = Math.round(r.normal() * spread * 8) / 8; // quantised: ties
  for (let j = 0; j < 20; j++) out[r.int(V)] = 6 + r.normal() * 2;
  return out;
}

describe('sampling: ranked partially, drawn as a full sort would', () => {
  it('ranks any prefix exactly as a full sort does, growing it in steps', () => {
    for (const seed of [1, 2, 3]) {
      const logits = modelLikeLogits(5000, seed, 1);
      const full = fullOrder(logits);
      const ranked = new RankedLogits(logits);
      for (const n of [1, 7, 64, 65, 1000, 4999, 5000]) {
        ranked.ensure(n);
        expect(ranked.sorted).toBe(n);
        expect(Array.from({ length: n }, (_, i) => ranked.at(i))).toEqual(full.slice(0, n));
      }
    }
  });

  it('makes the same draw as the full-sort reference for the same seed', () => {
    const V = 151_936; // Qwen2.5's vocabulary
    const settings = [
      { temperature: 1, topK: 0, topP: 1 },
      { temperature: 0.7, topK: 0, topP: 0.9 },
      { temperature: 1.3, topK: 50, topP: 1 },
      { temperature: 1, topK: 40, topP: 0.5 },
      { temperature: 2, topK: 0, topP: 1 }, // flat: the walk goes deep into the tail
      { temperature: 2, topK: 0, topP: 0.999 },
    ];
    let deep = 0;
    for (const [s, o] of settings.entries()) {
      for (let row = 0; row < 2; row++) {
        const logits = modelLikeLogits(V, 100 * s + row, row % 2 ? 3 : 0.5);
        for (let draw = 0; draw < 6; draw++) {
          const seed = 1000 * s + 10 * row + draw;
          const got = sampleToken(logits, { ...SAMPLING_DEFAULTS, ...o }, new Rng(seed));
          const want = referenceSample(logits, o, new Rng(seed).next());
          expect(got, `setting ${s} row ${row} draw ${draw}`).toBe(want);
          if (logits[want]! < 5) deep++; // drawn from the tail, past the strong candidates
        }
      }
    }
    expect(deep).toBeGreaterThan(5);
  });

  it('matches the reference on small rows for many seeds, and is greedy at temperature 0', () => {
    const logits = Float32Array.from([0.5, 2, 2, -1, 0, 1.5, 2, -3]);
    for (const o of [
      { temperature: 1, topK: 0, topP: 1 },
      { temperature: 0.5, topK: 3, topP: 1 },
      { temperature: 1, topK: 0, topP: 0.6 },
      { temperature: 1, topK: 100, topP: 0.95 }, // top_k over the vocabulary
    ]) {
      for (let seed = 0; seed < 300; seed++) {
        const got = sampleToken(logits, { ...SAMPLING_DEFAULTS, ...o }, new Rng(seed));
        expect(got).toBe(referenceSample(logits, o, new Rng(seed).next()));
      }
    }
    expect(sampleToken(logits, { ...SAMPLING_DEFAULTS, temperature: 0 }, new Rng(1))).toBe(1);
  });
});
