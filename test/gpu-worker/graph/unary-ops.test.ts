import { describe, it } from 'vitest';
import {
  erf,
  exp,
  gather,
  greater,
  log,
  logSoftmax,
  pow,
  reciprocal,
  relu,
  sigmoid,
  softmax,
  sqrt,
  tanh,
  where,
} from '../../../gpu-worker/src/graph/index.ts';
import { gradcheck } from '../../helpers/gradcheck.ts';

const X = { name: 'x', shape: [2, 3] };
const POS = { name: 'x', shape: [2, 3], data: [0.5, 1.2, 2, 0.9, 3.1, 0.25] };
// Away from relu's kink, so the finite difference is well defined.
const NOKINK = { name: 'x', shape: [2, 3], data: [0.5, -1.2, 2, -0.9, 3.1, -0.25] };

describe('gradients of elementwise ops match finite differences (float64)', () => {
  it.each([
    ['exp', exp, X],
    ['log', log, POS],
    ['sqrt', sqrt, POS],
    ['reciprocal', reciprocal, POS],
    ['tanh', tanh, X],
    ['sigmoid', sigmoid, X],
    ['relu', relu, NOKINK],
    ['pow 3', (x: Parameters<typeof exp>[0]) => pow(x, 3), X],
    ['pow -0.5', (x: Parameters<typeof exp>[0]) => pow(x, -0.5), POS],
  ] as const)('%s', async (_, f, input) => {
    await gradcheck((x) => f(x), [input]);
  });

  it('erf (float32: no float64 kernel)', async () => {
    await gradcheck((x) => erf(x), [X], { dtype: 'float32', eps: 1e-2, tol: 1e-3 });
  });

  it('softmax and log-softmax over the last and a middle axis', async () => {
    await gradcheck((x) => softmax(x, -1), [{ name: 'x', shape: [2, 3, 4] }]);
    await gradcheck((x) => softmax(x, 1), [{ name: 'x', shape: [2, 3, 4] }]);
    await gradcheck((x) => logSoftmax(x, -1), [{ name: 'x', shape: [2, 5] }]);
  });

  it('where sends the gradient to the chosen side', async () => {
    await gradcheck(
      (c, a, b) => where(greater(c, c.graph.scalar(0, 'float64')), a, b),
      [
        { name: 'c', shape: [2, 3], data: [1, -1, 2, -2, 0.5, -0.5], diff: false },
        { name: 'a', shape: [2, 3] },
        { name: 'b', shape: [3] },
      ],
    );
  });

  it('gather accumulates repeated indices in its gradient', async () => {
    await gradcheck(
      (table, idx) => gather(table, idx),
      [
        { name: 'table', shape: [5, 3] },
        { name: 'idx', shape: [2, 3], data: [0, 2, 2, 4, 0, 2], dtype: 'int64' },
      ],
    );
  });
});
