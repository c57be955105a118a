import { mixSeed, permutation, STREAM } from './order.ts';

/** Held-out share of a training file when no validation file is given. */
export type ValidationSplit = { fraction: number } | { count: number };

export interface SplitResult<T> {
  train: T[];
  validation: T[];
  /** Positions (in the input) of the validation items, ascending. */
  validationIndices: number[];
}

/**
 * A seeded, disjoint train/validation split; both parts keep the input order. A fraction rounds to
 * the nearest count but never to 0 when positive; at least one item always stays for training.
 */
export function splitValidation<T>(
  items: readonly T[],
  split: ValidationSplit,
  seed: number,
): SplitResult<T> {
  const n = items.length;
  let k: number;
  if ('fraction' in split) {
    const f = split.fraction;
    if (!(f >= 0 && f < 1)) throw new RangeError(`validation fraction ${f} must be in [0, 1)`);
    k = f === 0 ? 0 : Math.max(1, Math.round(f * n));
  } else {
    k = split.count;
    if (!Number.isInteger(k) || k < 0) throw new RangeError(`validation count ${k} must be an integer >= 0`);
  }
  if (k > 0 && k >= n) {
    throw new RangeError(`a validation split of ${k} leaves no training examples (there are ${n})`);
  }
  const chosen = permutation(n, mixSeed(seed, STREAM.split))
    .slice(0, k)
    .sort((a, b) => a - b);
  const held = new Set(chosen);
  const train: T[] = [];
  const validation: T[] = [];
  for (const [i, item] of items.entries()) (held.has(i) ? validation : train).push(item);
  return { train, validation, validationIndices: chosen };
}
