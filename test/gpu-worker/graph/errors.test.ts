import { describe, expect, it } from 'vitest';
import {
  add,
  concat,
  Graph,
  GraphError,
  matmul,
  reshape,
  type Value,
  where,
} from '../../../gpu-worker/src/graph/index.ts';

// A bad graph fails when the node is added, and the message points into the model by its path.
// Every case builds inside /side/layers.3/, as a side network's fourth block would.

const PATH = '/side/layers.3/';

function inLayer<T>(g: Graph, fn: () => T): T {
  return g.scope('side', () => g.scope('layers.3', fn));
}

/** Run `build` in the layer scope; it must throw a GraphError naming the path and matching `what`. */
function expectBuildError(build: (g: Graph) => unknown, what: RegExp): GraphError {
  const g = new Graph();
  let err: unknown;
  try {
    inLayer(g, () => build(g));
  } catch (e) {
    err = e;
  }
  expect(err, 'the graph should not build').toBeInstanceOf(GraphError);
  const msg = (err as GraphError).message;
  expect(msg).toContain(PATH);
  expect(msg).toMatch(what);
  // the rejected node was not added
  expect(g.nodes.filter((n) => msg.startsWith(`${n.name}:`))).toEqual([]);
  return err as GraphError;
}

describe('bad graphs fail at build time with the node path in the message', () => {
  it('matmul with inner dims that differ', () => {
    const err = expectBuildError((g) => {
      const x = g.input('x', 'float32', ['batch', 3]);
      const w = g.input('w', 'float32', [4, 5]);
      return matmul(x, w);
    }, /inner dims 3 and 4 differ/);
    expect(err.message).toMatch(/^\/side\/layers\.3\/MatMul: shape mismatch/);
    // the operands are named with their shapes
    expect(err.message).toContain('%x: float32[batch, 3]');
    expect(err.message).toContain('%w: float32[4, 5]');
  });

  it('matmul with a transposed operand reports the dims it compared', () => {
    expectBuildError((g) => {
      const x = g.input('x', 'float32', [2, 3]);
      const w = g.input('w', 'float32', [5, 4]);
      return matmul(x, w, { transB: true, name: 'q_proj' });
    }, /^\/side\/layers\.3\/q_proj: .*inner dims 3 and 4 differ/);
  });

  it('add of shapes that do not broadcast, static and symbolic', () => {
    expectBuildError((g) => {
      const a = g.input('a', 'float32', [2, 3]);
      const b = g.input('b', 'float32', [4]);
      return add(a, b);
    }, /^\/side\/layers\.3\/Add: shape mismatch: .* do not broadcast/);
    // `batch` and `seq` may differ at run time, so the builder cannot prove they broadcast
    expectBuildError((g) => {
      const a = g.input('a', 'float32', ['batch', 3]);
      const b = g.input('b', 'float32', ['seq', 3]);
      return add(a, b, 'residual');
    }, /^\/side\/layers\.3\/residual: shape mismatch/);
  });

  it('reshape to a size the input cannot fill', () => {
    expectBuildError(
      (g) => reshape(g.input('x', 'float32', [2, 3]), [4, 2]),
      /cannot reshape .* to \[4, 2\]/,
    );
    expectBuildError((g) => reshape(g.input('x', 'float32', [2, 3]), [-1, 4]), /cannot reshape/);
    // 3*batch elements do not split into rows of 2 for every batch
    expectBuildError((g) => reshape(g.input('x', 'float32', ['batch', 3]), [2, -1]), /cannot reshape/);
    expectBuildError((g) => reshape(g.input('x', 'float32', [6]), [-1, -1]), /more than one -1/);
    expectBuildError(
      (g) => reshape(g.input('x', 'float32', [6]), [0, 0, 6]),
      /^\/side\/layers\.3\/Reshape: .*no axis 1 to copy/,
    );
  });

  it('concat of mismatched shapes', () => {
    expectBuildError((g) => {
      const a = g.input('a', 'float32', [2, 3]);
      const b = g.input('b', 'float32', [4, 5]);
      return concat([a, b], 0);
    }, /^\/side\/layers\.3\/Concat: shape mismatch/);
  });

  it('a value from another graph is an unknown input', () => {
    const other = new Graph({ name: 'other' });
    const foreign = other.input('h', 'float32', [3]);
    expectBuildError((g) => add(g.input('x', 'float32', [3]), foreign), /unknown input %h.*another graph/);
    expectBuildError((g) => g.output(foreign, 'y'), /^\/side\/layers\.3\/outputs\/y: unknown input %h/);
  });

  it('a missing operand is refused, not passed to ONNX', () => {
    expectBuildError(
      (g) => add(g.input('x', 'float32', [3]), undefined as unknown as Value),
      /^\/side\/layers\.3\/Add: input 1 is not a graph value/,
    );
  });

  it('g.get of an unknown name lists the known ones', () => {
    const err = expectBuildError((g) => {
      g.input('tokens', 'int64', ['batch', 'seq']);
      return g.get('token');
    }, /unknown value 'token'/);
    expect(err.message).toContain('known: tokens');
  });

  it('float32 meets float64', () => {
    expectBuildError((g) => {
      const a = g.input('a', 'float32', [3]);
      const b = g.input('b', 'float64', [3]);
      return add(a, b);
    }, /^\/side\/layers\.3\/Add: dtype clash: %a: float32\[3\] vs %b: float64\[3\]/);
    expectBuildError((g) => {
      const a = g.input('a', 'float32', [2, 3]);
      const b = g.input('b', 'float64', [3, 4]);
      return matmul(a, b);
    }, /MatMul: dtype clash/);
    expectBuildError((g) => {
      const c = g.input('c', 'bool', [3]);
      return where(c, g.input('a', 'float32', [3]), g.input('b', 'float64', [3]));
    }, /Where: dtype clash/);
  });
});
