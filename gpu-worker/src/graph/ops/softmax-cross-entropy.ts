import type { OpDef, Value } from '../builder.ts';
import { dimEq } from '../dims.ts';
import { mul, sub } from './arith.ts';
import { cast } from './cast.ts';
import { floatDtype } from './check.ts';
import { unsqueeze } from './shape.ts';
import { equal, exp, where } from './unary.ts';

/**
 * Per-row softmax cross-entropy, -log softmax(scores)[label], 0 for rows labelled `ignoreIndex`:
 * ONNX SoftmaxCrossEntropyLoss (reduction none), which also returns the log-probabilities so the
 * backward needs no second softmax. The gradient is written directly,
 *
 *   d loss_i / d scores_ij = keep_i * (p_ij - [j == label_i])
 *
 * which costs a few elementwise passes over (N, C), instead of differentiating LogSoftmax and a
 * gather (a scatter into a zero (N, C) tensor plus LogSoftmax's own backward).
 */
export const SOFTMAX_CROSS_ENTROPY: OpDef = {
  type: 'SoftmaxCrossEntropyLoss',
  infer: ([scores, labels]) => {
    floatDtype(scores!);
    if (scores!.rank !== 2) throw new Error(`softmaxCrossEntropy: scores ${scores} must be (N, C)`);
    if (labels!.dtype !== 'int64' || labels!.rank !== 1 || !dimEq(labels!.shape[0]!, scores!.shape[0]!)) {
      throw new Error(`softmaxCrossEntropy: labels ${labels} must be int64 (N) for scores ${scores}`);
    }
    return [
      { dtype: scores!.dtype, shape: [scores!.shape[0]!] }, // (N)
      { dtype: scores!.dtype, shape: scores!.shape }, // (N, C) log-probabilities
    ];
  },
  vjp: ({ inputs: [scores, labels], outputs: [, logProb], grads: [g], attrs, needs }) => {
    if (!needs[0]) return [undefined, undefined];
    const graph = scores!.graph;
    const classes = scores!.shape[1];
    if (typeof classes !== 'number')
      throw new Error(`softmaxCrossEntropy: class count of ${scores} must be static`);
    const zero = graph.scalar(0, g!.dtype);
    const ignored = equal(labels!, graph.scalar(attrs.ignore_index as number, 'int64')); // (N)
    const rowGrad = unsqueeze(where(ignored, zero, g!), [-1]); // (N, 1)
    // Ignored labels (negative) would index from the end in OneHot; their rows are zeroed by rowGrad.
    const onehot = oneHot(labels!, classes, scores!.dtype); // (N, C)
    return [mul(sub(exp(logProb!), onehot), rowGrad), undefined]; // (N, C)
  },
};

/**
 * ONNX OneHot: (N) int64 -> (N, C) of 0 and 1, one pass with no bool intermediate. The CPU
 * kernel exists for float32 values only, so float64 graphs cast after.
 */
const ONE_HOT: OpDef = {
  type: 'OneHot',
  infer: ([indices, , values], attrs) => [
    { dtype: values!.dtype, shape: [...indices!.shape, attrs.__depth as number] },
  ],
};

function oneHot(indices: Value, depth: number, dtype: Value['dtype']): Value {
  const g = indices.graph;
  const values = g.constant('float32', [2], Float32Array.of(0, 1));
  return cast(g.op(ONE_HOT, [indices, g.vector([depth]), values], { axis: -1, __depth: depth }), dtype);
}

export function softmaxCrossEntropy(
  scores: Value, // (N, C)
  labels: Value, // (N) int64
  ignoreIndex = -100,
): Value {
  const [loss] = scores.graph.emit(SOFTMAX_CROSS_ENTROPY, [scores, labels], {
    reduction: 'none',
    ignore_index: ignoreIndex,
  });
  return loss!; // (N)
}
