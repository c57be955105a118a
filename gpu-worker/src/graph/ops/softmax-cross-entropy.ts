import type { OpDef, Value } from '../builder.ts';
import { dimEq } from '../dims.ts';
import { mul, neg } from './arith.ts';
import { floatDtype } from './check.ts';
import { scatterElementsAdd } from './gather-elements.ts';
import { unsqueeze } from './shape.ts';
import { equal, exp, where } from './unary.ts';

/**
 * Per-row softmax cross-entropy, -log softmax(scores)[label], 0 for rows labelled `ignoreIndex`:
 * ONNX SoftmaxCrossEntropyLoss (reduction none), which also returns the log-probabilities so the
 * backward needs no second softmax. The gradient is written directly,
 *
 *   d loss_i / d scores_ij = keep_i * (p_ij - [j == label_i])
 *
 * which costs two passes over (N, C) (exp and the product) plus a scatter of N values, instead of
 * differentiating LogSoftmax and a gather (a scatter into a zero (N, C) tensor plus LogSoftmax's
 * own backward).
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
    // p * r everywhere, then -r added at each row's label column by a sparse scatter: no (N, C)
    // one-hot is ever built. Ignored rows have r = 0 and read column 0, so they change nothing.
    const column = unsqueeze(where(ignored, graph.scalar(0, 'int64'), labels!), [-1]); // (N, 1)
    const dense = mul(exp(logProb!), rowGrad); // (N, C)
    return [scatterElementsAdd(dense, column, neg(rowGrad), 1), undefined]; // (N, C)
  },
};

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
