import { GraphError, type Value } from '../builder.ts';
import { shapeEq, shapeStr } from '../dims.ts';
import { div, neg } from '../ops/arith.ts';
import { gatherElements } from '../ops/gather-elements.ts';
import { reduceSum } from '../ops/reduce.ts';
import { squeeze, unsqueeze } from '../ops/shape.ts';
import { logSoftmax } from '../ops/softmax.ts';
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
 *   logits (N, V) ─ LogSoftmax ─ GatherElements(label column) (N, 1) ─ Squeeze ─ -logp (N)
 *   labels (N) ─ Equal ignoreIndex ─┬─ Where: ignored labels read column 0 (always in range)
 *                                   └─ Where: ignored tokens contribute 0, kept count 1
 *   loss = sum(nll) / max(1, kept)
 *
 * Leading axes are free: logits (..., V) with labels (...) works the same.
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
  const g = logits.graph;
  return g.scope(o.name, () => {
    const logProbs = logSoftmax(atLeastFloat32(logits), -1); // (N, V)
    const dtype = logProbs.dtype;
    const zero = g.scalar(0, dtype);
    const ignored = equal(labels, g.scalar(o.ignoreIndex, 'int64')); // (N) bool
    const column = where(ignored, g.scalar(0, 'int64'), labels); // (N)
    const picked = gatherElements(logProbs, unsqueeze(column, [-1]), logProbs.rank - 1); // (N, 1)
    const nll = where(ignored, zero, neg(squeeze(picked, [-1]))); // (N)
    const kept = reduceSum(where(ignored, zero, g.scalar(1, dtype)), undefined, { keepdims: false }); // ()
    const denominator = where(greater(kept, zero), kept, g.scalar(1, dtype)); // ()
    return div(reduceSum(nll, undefined, { keepdims: false }), denominator); // ()
  });
}
