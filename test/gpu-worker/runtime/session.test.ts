import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { encodeModel, node, valueInfo } from '../../../gpu-worker/src/graph/proto.ts';
import {
  availableProviders,
  bool,
  createSession,
  FeedError,
  f32,
  f64,
  i32,
  i64,
  providerProblem,
  type SessionOptions,
  tensor,
  toArray,
  toScalar,
  u8,
  zeros,
} from '../../../gpu-worker/src/runtime/index.ts';

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

// Reference: the relu(x @ w + b) numbers the first test computes by hand.
const X = [1, 2, 3, -1, 0, 1];
const W = [1, -1, 0, 2, 0.5, -3];
const B = [0.25, -0.5];
const tinyFeeds = () => ({ x: f32(X, [2, 3]), w: f32(W, [3, 2]), b: f32(B, [2]) });
// relu(x @ w + b) in plain JS: row 0 gives 1 + 1.5 + 0.25 = 2.75 and -1 + 4 - 9 - 0.5 < 0; row 1 < 0
const Y = [2.75, 0, 0, 0];

describe('tensor helpers', () => {
  it('build each dtype from numbers or typed arrays, and read back with toArray', () => {
    expect(f32([1.5, 2], [2]).type).toBe('float32');
    expect(f64([0.1], [1]).data).toBeInstanceOf(Float64Array);
    expect(toArray(f64([0.1], [1]))).toEqual([0.1]); // no float32 rounding
    expect(i64([3, -4], [2]).data).toEqual(BigInt64Array.from([3n, -4n]));
    expect(toArray(i64([3, -4], [1, 2]))).toEqual([3, -4]);
    expect(toArray(i32([7], [1]))).toEqual([7]);
    expect(toArray(u8([255, 0], [2]))).toEqual([255, 0]);
    expect(bool([true, false, true], [3]).type).toBe('bool');
    expect(toArray(bool([true, false, true], [3]))).toEqual([1, 0, 1]);
    expect(toArray(zeros('int64', [2, 2]))).toEqual([0, 0, 0, 0]);
    expect(toScalar(f32([2.5], []))).toBe(2.5);
  });

  it('keep a typed array of the right type without copying', () => {
    const data = new Float32Array(6);
    expect(f32(data, [2, 3]).data).toBe(data);
    const big = new BigInt64Array(2);
    expect(tensor('int64', big, [2]).data).toBe(big);
  });

  it('name the input when the shape does not fit the data', () => {
    expect(() => f32([1, 2, 3], [2, 2], 'x')).toThrow(
      "tensor 'x': shape [2, 2] holds 4 elements but the data has 3",
    );
    expect(() => i64(new BigInt64Array(4), [2, -2], 'tokens')).toThrow(/tensor 'tokens': dim 1 of \[2, -2\]/);
    expect(() => f32([1], [0.5], 'lr')).toThrow(/tensor 'lr'/);
    expect(() => i64([1.5], [1], 'ids')).toThrow(/tensor 'ids' \(int64\): 1.5 is not an integer/);
    expect(() => f32(new Float64Array(2) as unknown as Float32Array, [2], 'x')).toThrow(
      /tensor 'x': float32 data must be a Float32Array or a number array, got Float64Array/,
    );
    expect(() => toScalar(f32([1, 2], [2]), 'loss')).toThrow(/tensor 'loss': expected one element/);
    expect(() => toArray(i64(BigInt64Array.from([2n ** 60n]), [1]), 'step')).toThrow(/'step'.*exceeds 2\^53/);
  });
});

// One Identity per dtype the helpers make: values go in and come back unchanged.
function identities(): Uint8Array {
  const types = ['float32', 'float64', 'int64', 'int32', 'bool', 'uint8'] as const;
  return encodeModel({
    name: 'identities',
    nodes: types.map((t) => node('Identity', [`in_${t}`], [`out_${t}`])),
    inputs: types.map((t) => valueInfo(`in_${t}`, t, ['n'])),
    outputs: types.map((t) => valueInfo(`out_${t}`, t, ['n'])),
  });
}

describe('Session', () => {
  it('round-trips every helper dtype through onnxruntime', async () => {
    const session = await createSession(identities());
    const out = await session.run({
      in_float32: f32([0.5, -1], [2]),
      in_float64: f64([0.1, 1e300], [2]),
      in_int64: i64([-(2 ** 40), 7], [2]),
      in_int32: i32([-3, 2 ** 30], [2]),
      in_bool: bool([false, true], [2]),
      in_uint8: u8([0, 200], [2]),
    });
    expect(toArray(out.out_float32!)).toEqual([0.5, -1]);
    expect(toArray(out.out_float64!)).toEqual([0.1, 1e300]);
    expect(toArray(out.out_int64!)).toEqual([-(2 ** 40), 7]);
    expect(toArray(out.out_int32!)).toEqual([-3, 2 ** 30]);
    expect(out.out_bool!.type).toBe('bool');
    expect(toArray(out.out_bool!)).toEqual([0, 1]);
    expect(toArray(out.out_uint8!)).toEqual([0, 200]);
    await session.dispose();
  });

  it('exposes the declared inputs and outputs', async () => {
    const session = await createSession(tinyModel());
    expect(session.inputs).toEqual([
      { name: 'x', type: 'float32', shape: ['batch', 3] },
      { name: 'w', type: 'float32', shape: [3, 2] },
      { name: 'b', type: 'float32', shape: [2] },
    ]);
    expect(session.outputs).toEqual([{ name: 'y', type: 'float32', shape: ['batch', 2] }]);
    expect(session.inputNames).toEqual(['x', 'w', 'b']);
    await session.dispose();
  });

  it('reports every feed problem at once: missing, unknown, dtype, rank, dims', async () => {
    const session = await createSession(tinyModel());
    const err = await session
      .run({ x: f64([1, 2, 3], [1, 3]), w: f32([1, 2, 3, 4], [2, 2]), bias: f32([0, 0], [2]) })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FeedError);
    expect((err as FeedError).problems).toEqual([
      'missing inputs: b',
      'unknown inputs: bias (the model takes x, w, b)',
      'x: dtype float64, model wants float32',
      'w: dim 0 is 2, model wants 3 in [3, 2]',
    ]);
    expect((err as FeedError).message).toMatch(/^session\.run: missing inputs: b; unknown inputs: bias/);

    await expect(session.run({ ...tinyFeeds(), b: f32([1, 2], [1, 2]) })).rejects.toThrow(
      'b: rank 2 [1, 2], model wants rank 1 [2]',
    );
    await expect(session.run({ ...tinyFeeds(), x: new Float32Array(6) as never })).rejects.toThrow(
      'x: expected an onnxruntime Tensor, got Float32Array',
    );
    await expect(session.run(tinyFeeds(), ['y', 'z'])).rejects.toThrow(
      'unknown outputs: z (the model gives y)',
    );
    await session.dispose();
  });

  it('holds a symbolic dim to one size across inputs', async () => {
    const model = encodeModel({
      name: 'sum',
      nodes: [node('Add', ['a', 'b'], ['c'])],
      inputs: [valueInfo('a', 'float32', ['batch', 2]), valueInfo('b', 'float32', ['batch', 2])],
      outputs: [valueInfo('c', 'float32', ['batch', 2])],
    });
    const session = await createSession(model);
    await expect(session.run({ a: zeros('float32', [3, 2]), b: zeros('float32', [2, 2]) })).rejects.toThrow(
      "b: dim 0 'batch' is 2, but a has batch = 3",
    );
    const ok = await session.run({ a: f32([1, 2], [1, 2]), b: f32([3, 4], [1, 2]) });
    expect(toArray(ok.c!)).toEqual([4, 6]);
    await session.dispose();
  });

  it('gives the same numbers under every session option', async () => {
    const variants: Partial<SessionOptions>[] = [
      { intraOpThreads: 1, interOpThreads: 1 },
      { executionMode: 'parallel', interOpThreads: 2, intraOpThreads: 2 },
      { graphOptimization: 'disabled', memoryArena: false, memoryPattern: false },
      { graphOptimization: 'basic' },
      { graphOptimization: 'extended' },
      { graphOptimization: 'layout' },
    ];
    const ref = await createSession(tinyModel());
    const want = toArray((await ref.run(tinyFeeds())).y!);
    await ref.dispose();
    for (const opts of variants) {
      const session = await createSession(tinyModel(), opts);
      expect(toArray((await session.run(tinyFeeds())).y!), JSON.stringify(opts)).toEqual(want);
      await session.dispose();
    }
  });

  it('rejects bad options before touching onnxruntime', async () => {
    await expect(createSession(tinyModel(), { intraOpThreads: -1 })).rejects.toThrow(
      'createSession: intraOpThreads must be a non-negative integer, got -1',
    );
    await expect(createSession(tinyModel(), { interOpThreads: 1.5 })).rejects.toThrow(/interOpThreads/);
  });

  it('opens a model from a file path, and names a path that is not there', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ladder-session-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'tiny.onnx');
    writeFileSync(path, tinyModel());
    const session = await createSession(path);
    expect(toArray((await session.run(tinyFeeds())).y!)).toEqual(Y);
    await session.dispose();
    await expect(createSession(join(dir, 'nope.onnx'))).rejects.toThrow(/no model file .*nope\.onnx/);
    await expect(createSession(new Uint8Array([1, 2, 3]))).rejects.toThrow(
      /cannot open 3-byte model with provider 'cpu': .*protobuf parsing failed/,
    );
  });

  it('refuses to run once disposed; dispose is idempotent and waits for runs in flight', async () => {
    const session = await createSession(tinyModel());
    const inFlight = session.run(tinyFeeds());
    await session.dispose();
    await expect(inFlight).resolves.toHaveProperty('y');
    expect(session.isDisposed).toBe(true);
    await expect(session.run(tinyFeeds())).rejects.toThrow('session.run: this session was disposed');
    await session.dispose();
  });
});

describe('execution providers', () => {
  it('cpu is always available', () => {
    expect(availableProviders()).toContain('cpu');
    expect(providerProblem('cpu')).toBeUndefined();
  });

  it.skipIf(availableProviders().includes('cuda'))(
    'says which CUDA files are missing and how to get them',
    () => {
      expect(providerProblem('cuda')).toMatch(
        /libonnxruntime_providers_cuda|not built with the cuda provider/,
      );
      if (process.platform === 'linux' && process.arch === 'x64') {
        expect(providerProblem('cuda')).toMatch(
          /ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node/,
        );
      }
    },
  );

  it.skipIf(!availableProviders().includes('webgpu'))(
    'webgpu either runs like cpu or fails naming what it needs',
    async () => {
      const session = await createSession(tinyModel(), { provider: 'webgpu' }).catch((e: Error) => e);
      if (session instanceof Error) {
        expect(session.message).toMatch(/provider 'webgpu'.*WebGPU needs a GPU adapter/s);
        return;
      }
      const y = toArray((await session.run(tinyFeeds())).y!);
      expect(y.map((v, i) => Math.abs(v - Y[i]!))).toSatisfy((d: number[]) => d.every((e) => e < 1e-5));
      await session.dispose();
    },
  );
});
