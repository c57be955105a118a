import { describe, expect, it } from 'vitest';
import { encodeModel, node, valueInfo } from '../../../gpu-worker/src/graph/proto.ts';
import { createSession, f32 } from '../../../gpu-worker/src/runtime/index.ts';

// y = relu(x @ w + b), built in code and run through onnxruntime-node, checked by hand-computed numbers.
function tinyModel(): Uint8Array {
  return encodeModel({
    name: 'tiny',
    nodes: [node('MatMul', ['x', 'w'], ['xw']), node('Add', ['xw', 'b'], ['z']), node('Relu', ['z'], ['y'])],
    inputs: [
      valueInfo('x', 'float32', ['batch', 3]),
      valueInfo('w', 'float32', [3, 2]),
      valueInfo('b', 'float32', [2]),
    ],
    outputs: [valueInfo('y', 'float32', ['batch', 2])],
  });
}

describe('onnxruntime-node runs a graph built in code', () => {
  it('computes relu(x @ w + b)', async () => {
    const session = await createSession(tinyModel());
    const x = [1, 2, 3, -1, 0, 1];
    const w = [1, -1, 0, 2, 0.5, -3];
    const b = [0.25, -0.5];
    const out = await session.run({ x: f32(x, [2, 3]), w: f32(w, [3, 2]), b: f32(b, [2]) });
    const expected: number[] = [];
    for (let r = 0; r < 2; r++) {
      for (let c = 0; c < 2; c++) {
        let acc = b[c]!;
        for (let k = 0; k < 3; k++) acc += x[r * 3 + k]! * w[k * 2 + c]!;
        expected.push(Math.max(0, acc));
      }
    }
    expect(out.y!.dims).toEqual([2, 2]);
    expect(Array.from(out.y!.data as Float32Array)).toEqual(expected.map((v) => Math.fround(v)));
    await session.dispose();
  });

  it('names every missing input at once', async () => {
    const session = await createSession(tinyModel());
    await expect(session.run({ x: f32([1, 2, 3], [1, 3]) })).rejects.toThrow(/missing inputs: w, b/);
    await session.dispose();
  });

  it('refuses an execution provider this build lacks, naming it', async () => {
    await expect(createSession(tinyModel(), { provider: 'cuda' })).rejects.toThrow(/'cuda' is not available/);
  });
});
