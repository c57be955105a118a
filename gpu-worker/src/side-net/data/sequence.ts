import { ExampleError } from './errors.ts';
import { IGNORE_INDEX, type TrainingExample, type Truncation } from './types.ts';

/**
 * Tokens and per-token "trained" flags -> a shifted, length-capped TrainingExample.
 *
 * Overlong sequences keep their completion. Positions are T = (kept tokens) - 1; to fit
 * T <= maxLength, tokens go in this order:
 *   1. everything after the last trained token (it cannot change the loss);
 *   2. the prompt from its START (oldest context first), keeping the tokens right before the
 *      first trained one -> truncated 'prompt';
 *   3. only when the trained span alone does not fit (with one token of context before it): the
 *      window starts one token before the first trained token and the trained span is cut from
 *      its END, so the eos / later turns are lost -> truncated 'completion'.
 * A trained token at index 0 has no position to predict it from, so it is never a target.
 */
export function toTrainingExample(
  tokens: readonly number[],
  trained: readonly boolean[],
  maxLength: number,
  line: number,
): TrainingExample {
  if (trained.length !== tokens.length)
    throw new Error('toTrainingExample: tokens and flags differ in length');
  if (!Number.isInteger(maxLength) || maxLength < 1)
    throw new RangeError(`maxLength ${maxLength} must be >= 1`);
  let first = -1;
  let last = -1;
  for (let i = 1; i < tokens.length; i++) {
    if (!trained[i]) continue;
    if (first < 0) first = i;
    last = i;
  }
  if (last < 0) throw new ExampleError(line, null, 'no token to train on (the completion is empty)');

  let start = 0;
  let end = last; // index of the last kept token; positions = end - start
  let truncated: Truncation = 'none';
  if (end - start > maxLength) {
    start = end - maxLength;
    truncated = 'prompt';
    if (start >= first) {
      start = first - 1;
      end = start + maxLength;
      truncated = 'completion';
    }
  }

  const T = end - start;
  const inputIds = new Int32Array(T); // (T)
  const labels = new Int32Array(T).fill(IGNORE_INDEX); // (T)
  let targetCount = 0;
  for (let t = 0; t < T; t++) {
    inputIds[t] = tokens[start + t]!;
    if (trained[start + t + 1]) {
      labels[t] = tokens[start + t + 1]!;
      targetCount++;
    }
  }
  return { line, inputIds, labels, targetCount, truncated };
}
