import { GraphError, type Value } from '../builder.ts';
import { shapeEq, shapeStr } from '../dims.ts';
import { div } from '../ops/arith.ts';
import { reduceSum } from '../ops/reduce.ts';
import { reshape } from '../ops/shape.ts';
import { softmaxCrossEntropy } from '../ops/softmax-cross-entropy.ts';
import { equal, greater, where } from '../ops/unary.ts';
import { atLeastFloat32 } from './precision.ts';

export interface CrossEntropyOptions {
  /** Labels equal to this are skipped (prompt tokens, padding), as PyTorch's ignore_index. */
  ignoreIndex: number;
  name: string;
}

const DEFAULTS: CrossEntropyOptions = { ignoreIndex: -100, name: 'cross_entropy' };

/**
 * Mean negative log-likelihood of the labels over the kept tokens; 0 when none is kept.
 *
 *   logits (..., V) ─ Reshape (N, V) ─┐
 *   labels (...)    ─ Reshape (N) ────┴─ SoftmaxCrossEntropyLoss ─ nll (N), 0 where ignored
 *   labels ─ Equal ignoreIndex ─ Where(0, 1) ─ kept ()
 *   loss = sum(nll) / max(1, kept)
 */
export function crossEntropy(
  logits: Value, // (N, V)
  labels: Value, // (N) int64
  opts: Partial<CrossEntropyOptions> = {},
): Value {
  const o = { ...DEFAULTS, ...opts } satisfies CrossEntropyOptions;
  if (labels.dtype !== 'int64') throw new GraphError(`crossEntropy: labels ${labels} must be int64`);
  if (!shapeEq(labels.shape, logits.shape.slice(0, -1))) {
    throw new GraphError(
      `crossEntropy: labels ${shapeStr(labels.shape)} must be logits ${shapeStr(logits.shape)} without the class axis`,
    );
  }
  const classes = logits.shape.at(-1);
  if (typeof classes !== 'number')
    throw new GraphError(`crossEntropy: the class axis of ${logits} must be static`);
  const g = logits.graph;
  return g.scope(o.name, () => {
    const scores = logits.rank === 2 ? logits : reshape(logits, [-1, classes]); // (N, V)
    const flat = labels.rank === 1 ? labels : reshape(labels, [-1]); // (N)
    const nll = softmaxCrossEntropy(atLeastFloat32(scores), flat, o.ignoreIndex); // (N)
    const dtype = nll.dtype;
    const zero = g.scalar(0, dtype);
    const ignored = equal(flat, g.scalar(o.ignoreIndex, 'int64')); // (N) bool
    const kept = reduceSum(where(ignored, zero, g.scalar(1, dtype)), undefined, { keepdims: false }); // ()
    const denominator = where(greater(kept, zero), kept, g.scalar(1, dtype)); // ()
    return div(reduceSum(nll, undefined, { keepdims: false }), denominator); // ()
  });
}
