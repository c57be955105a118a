import { Rng } from '../../util/rng.ts';

/** Independent random streams drawn from one seed: which stream, then (say) the epoch. */
export const STREAM = { examples: 1, batches: 2, split: 3 } as const;

/**
 * A uint32 seed from a user seed and stream parts (murmur3's finaliser per part), so the order of
 * epoch e does not depend on having drawn epochs 0..e-1: a pure function of (seed, epoch).
 */
export function mixSeed(seed: number, ...parts: number[]): number {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed ${seed} must be a safe integer`);
  let h = 0x9e3779b9;
  for (const p of [seed % 2 ** 32, Math.floor(seed / 2 ** 32), ...parts]) {
    h = Math.imul(h ^ (p >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** A uniformly random permutation of 0..n-1 (Fisher-Yates). */
export function permutation(n: number, seed: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  const rng = new Rng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}
