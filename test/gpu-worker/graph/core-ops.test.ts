import { describe, expect, it } from 'vitest';
import {
  add,
  cast,
  concat,
  div,
  expand,
  matmul,
  mul,
  neg,
  reduceMean,
  reduceSum,
  reduceSumSquare,
  reshape,
  slice,
  split,
  squeeze,
  sub,
  transpose,
  unsqueeze,
} from '../../../gpu-worker/src/graph/index.ts';
import { gradcheck } from '../../helpers/gradcheck.ts';

describe('gradients of the core ops match finite differences (float64)', () => {
  it('add/sub/mul/div with numpy broadcasting', async () => {
    await gradcheck(
      (a, b) => add(a, b),
      [
        { name: 'a', shape: [2, 3] },
        { name: 'b', shape: [3] },
      ],
    );
    await gradcheck(
      (a, b) => sub(a, b),
      [
        { name: 'a', shape: [2, 1, 3] },
        { name: 'b', shape: [4, 1] },
      ],
    );
    await gradcheck(
      (a, b) => mul(a, b),
      [
        { name: 'a', shape: [2, 3] },
        { name: 'b', shape: [2, 1] },
      ],
    );
    await gradcheck(
      (a, b) => div(a, b),
      [
        { name: 'a', shape: [2, 3] },
        { name: 'b', shape: [3], data: [1.5, -2, 0.75] },
      ],
    );
    await gradcheck((a) => neg(a), [{ name: 'a', shape: [4] }]);
  });

  it('fan-out: a value used several times accumulates its gradients', async () => {
    await gradcheck(
      (a, b) => mul(add(a, b), mul(a, a)),
      [
        { name: 'a', shape: [3] },
        { name: 'b', shape: [] },
      ],
    );
  });

  it('matmul in every transpose combination, with batch broadcasting', async () => {
    const A = { name: 'a', shape: [2, 3, 4] };
    await gradcheck((a, b) => matmul(a, b), [A, { name: 'b', shape: [4, 5] }]);
    await gradcheck((a, b) => matmul(a, b, { transB: true }), [A, { name: 'b', shape: [2, 5, 4] }]);
    await gradcheck((a, b) => matmul(a, b, { transA: true }), [A, { name: 'b', shape: [3, 2] }]);
    await gradcheck(
      (a, b) => matmul(a, b, { transA: true, transB: true }),
      [A, { name: 'b', shape: [1, 2, 3] }],
    );
  });

  it('matmul transposes in float32 go through FusedMatMul', async () => {
    const A = { name: 'a', shape: [2, 3, 4] };
    for (const [transA, transB, bShape] of [
      [false, true, [5, 4]],
      [true, false, [3, 5]],
      [true, true, [5, 3]],
    ] as const) {
      await gradcheck((a, b) => matmul(a, b, { transA, transB }), [A, { name: 'b', shape: [...bShape] }], {
        dtype: 'float32',
      });
    }
  });

  it('reductions', async () => {
    await gradcheck((a) => reduceSum(a, [1]), [{ name: 'a', shape: [2, 3, 2] }]);
    await gradcheck((a) => reduceSum(a, [0, 2], { keepdims: false }), [{ name: 'a', shape: [2, 3, 2] }]);
    await gradcheck((a) => reduceMean(a, [-1]), [{ name: 'a', shape: [2, 5] }]);
    await gradcheck((a) => reduceSumSquare(a, [0]), [{ name: 'a', shape: [3, 2] }]);
    await gradcheck(
      (a) => reduceSumSquare(a, undefined, { keepdims: false }),
      [{ name: 'a', shape: [2, 3] }],
    );
    await gradcheck((a) => reduceMean(a, undefined, { keepdims: false }), [{ name: 'a', shape: [2, 3] }]);
  });

  it('shape ops', async () => {
    await gradcheck((a) => reshape(a, [0, -1]), [{ name: 'a', shape: [2, 3, 2] }]);
    await gradcheck((a) => transpose(a, [2, 0, 1]), [{ name: 'a', shape: [2, 3, 4] }]);
    await gradcheck((a) => expand(a, [2, 3, 4]), [{ name: 'a', shape: [3, 1] }]);
    await gradcheck((a) => squeeze(unsqueeze(a, [0, 2]), [0]), [{ name: 'a', shape: [2, 3] }]);
    await gradcheck(
      (a, b) => concat([a, b, a], 1),
      [
        { name: 'a', shape: [2, 1] },
        { name: 'b', shape: [2, 3] },
      ],
    );
    await gradcheck(
      (a) => {
        const [x, y] = split(a, 1, [1, 3]);
        return mul(x!, y!);
      },
      [{ name: 'a', shape: [2, 4] }],
    );
    await gradcheck(
      (a) => slice(a, [1, 0], [3, Number.MAX_SAFE_INTEGER], [0, 1]),
      [{ name: 'a', shape: [4, 3] }],
    );
    await gradcheck((a) => slice(a, [0], [-1], [1]), [{ name: 'a', shape: [2, 5] }]);
    await gradcheck((a) => cast(cast(a, 'float32'), 'float64'), [{ name: 'a', shape: [3] }], {
      eps: 1e-2,
      tol: 1e-4,
    });
  });
});

describe('shape inference', () => {
  it('follows symbolic reshapes', async () => {
    const { Graph } = await import('../../../gpu-worker/src/graph/index.ts');
    const g = new Graph();
    const x = g.input('x', 'float32', ['batch', 'seq', 64]);
    const heads = reshape(x, [0, 0, 4, 16]);
    expect(heads.shape).toEqual(['batch', 'seq', 4, 16]);
    const flat = reshape(x, [-1, 64]);
    expect(flat.shape).toEqual(['batch*seq', 64]);
    expect(reshape(transpose(heads, [0, 2, 1, 3]), [0, 0, -1]).shape).toEqual(['batch', 4, '16*seq']);
  });
});
