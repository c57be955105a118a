import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataLocation } from 'onnx-buf';
import { afterAll, describe, expect, it } from 'vitest';
import {
  add,
  dumpGraph,
  ExternalDataWriter,
  Graph,
  ifElse,
  matmul,
  reduceSum,
  relu,
  saveModel,
  split,
  toModelBytes,
} from '../../../gpu-worker/src/graph/index.ts';
import { bool, createSession, f32, toArray } from '../../../gpu-worker/src/runtime/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'ladder-serialize-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// y = relu(x @ w1 + b1) @ w2 with w1 and w2 big enough to go to external data at a 1 KiB threshold.
function mlp(): Graph {
  const g = new Graph({ name: 'mlp' });
  const fill = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * k) / 4);
  const x = g.input('x', 'float32', ['batch', 16]);
  const w1 = g.initializer('w1', 'float32', [16, 32], fill(16 * 32, 0.7));
  const b1 = g.initializer('b1', 'float32', [32], fill(32, 1.3)); // 128 B: stays inline
  const w2 = g.initializer('w2', 'float32', [32, 8], fill(32 * 8, 0.3));
  const y = g.scope('side', () => {
    const h = g.scope('layers.0', () => relu(add(matmul(x, w1, { name: 'up' }), b1)));
    return g.scope('head', () => matmul(h, w2));
  });
  g.output(y, 'y');
  return g;
}

const x = () =>
  f32(
    Array.from({ length: 3 * 16 }, (_, i) => Math.cos(i) * 2),
    [3, 16],
    'x',
  );

describe('saveModel', () => {
  it('writes large initializers to path.data and ORT opens the pair from the path', async () => {
    const g = mlp();
    const path = join(dir, 'mlp.onnx');
    saveModel(g, path, { externalThreshold: 1024 });

    expect(readdirSync(dir).sort()).toEqual(['mlp.onnx', 'mlp.onnx.data']); // no .tmp left
    // w1 (2048 B) at 0, w2 (1024 B) at 2048: both 64-byte aligned
    expect(statSync(`${path}.data`).size).toBe(2048 + 1024);
    const model = fromBinary(ModelProtoSchema, readFileSync(path));
    const where = Object.fromEntries(
      model.graph!.initializer.map((t) => [
        t.name,
        t.dataLocation === TensorProto_DataLocation.EXTERNAL
          ? Object.fromEntries(t.externalData.map((e) => [e.key, e.value]))
          : `inline ${t.rawData.byteLength} B`,
      ]),
    );
    expect(where).toEqual({
      w1: { location: 'mlp.onnx.data', offset: '0', length: '2048' },
      b1: 'inline 128 B',
      w2: { location: 'mlp.onnx.data', offset: '2048', length: '1024' },
    });

    const fromFile = await createSession(path);
    const inline = await createSession(toModelBytes(g));
    const a = await fromFile.run({ x: x() });
    const b = await inline.run({ x: x() });
    expect(a.y!.dims).toEqual([3, 8]);
    expect(toArray(a.y!)).toEqual(toArray(b.y!));
    expect(toArray(a.y!).some((v) => v !== 0)).toBe(true);
    await fromFile.dispose();
    await inline.dispose();
  });

  it('a model with external data opened from its bytes fails, saying to open it by path', async () => {
    const path = join(dir, 'bytes.onnx');
    saveModel(mlp(), path, { externalThreshold: 1024 });
    await expect(createSession(readFileSync(path))).rejects.toThrow(
      /external data.*open it from its file path/is,
    );
  });

  it('keeps everything inline under the threshold and removes a stale .data', async () => {
    const path = join(dir, 'small.onnx');
    saveModel(mlp(), path, { externalThreshold: 1024 });
    expect(existsSync(`${path}.data`)).toBe(true);
    saveModel(mlp(), path); // default threshold: 1 MiB
    expect(existsSync(`${path}.data`)).toBe(false);
    const s = await createSession(path);
    const inline = await createSession(toModelBytes(mlp()));
    expect(toArray((await s.run({ x: x() })).y!)).toEqual(toArray((await inline.run({ x: x() })).y!));
    await s.dispose();
    await inline.dispose();
  });
});

describe('toModelBytes', () => {
  it('leaves out nodes no output needs, and keeps what a branch reads from the enclosing graph', async () => {
    const g = new Graph({ name: 'dead' });
    const x = g.input('x', 'float32', [2, 3]);
    const doubled = g.scope('read_by_branch', () => add(x, x));
    g.scope('unused', () => matmul(relu(x), x, { transB: true })); // read by nothing
    const cond = g.input('cond', 'bool', [1]);
    const [y] = ifElse(g, cond, {
      ifTrue: (b) => [relu(b.outer(doubled))],
      ifFalse: (b) => [b.outer(x)],
    });
    g.output(reduceSum(y!, [1]), 'y');
    const model = fromBinary(ModelProtoSchema, toModelBytes(g));
    const names = model.graph!.node.map((n) => n.name);
    expect(names.some((n) => n.startsWith('/unused/'))).toBe(false);
    expect(names.some((n) => n.startsWith('/read_by_branch/'))).toBe(true);
    const s = await createSession(toModelBytes(g));
    const data = [1, -2, 3, -4, 5, -6];
    for (const c of [true, false]) {
      const out = await s.run({
        x: f32(data, [2, 3]),
        cond: bool([c], [1]),
      });
      const rows = [data.slice(0, 3), data.slice(3)].map((r) =>
        r.reduce((a, v) => a + (c ? Math.max(0, 2 * v) : v), 0),
      );
      expect(toArray(out.y!)).toEqual(rows);
    }
    await s.dispose();
  });
});

describe('ExternalDataWriter', () => {
  it('streams weights to the data file as they are built; the saved model matches the inline one', async () => {
    const inlineSession = await createSession(toModelBytes(mlp()));
    const want = toArray((await inlineSession.run({ x: x() })).y!);
    await inlineSession.dispose();

    // The same model, w1 written to the data file before the graph is even finished.
    const path = join(dir, 'streamed.onnx');
    const writer = new ExternalDataWriter(`${path}.data`);
    const g = new Graph({ name: 'mlp' });
    const fill = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * k) / 4);
    const w1 = g.externalInitializer('w1', 'float32', [16, 32], writer.append(fill(16 * 32, 0.7)));
    const b1 = g.initializer('b1', 'float32', [32], fill(32, 1.3));
    const w2 = g.initializer('w2', 'float32', [32, 8], fill(32 * 8, 0.3)); // appended by saveModel
    const input = g.input('x', 'float32', ['batch', 16]);
    g.output(matmul(relu(add(matmul(input, w1), b1)), w2), 'y');
    expect(() => toModelBytes(g)).toThrow(/external data/);
    saveModel(g, path, { externalThreshold: 1024, dataWriter: writer });
    expect(statSync(`${path}.data`).size).toBeGreaterThanOrEqual((16 * 32 + 32 * 8) * 4);

    const session = await createSession(path);
    expect(toArray((await session.run({ x: x() })).y!)).toEqual(want);
    await session.dispose();
  });
});

describe('dumpGraph', () => {
  it('lists inputs, initializers, each node by path with op and shapes, and outputs', () => {
    const g = mlp();
    const [lo, hi] = split(g.get('x'), 1, [4, 12]);
    g.output(lo!, 'lo');
    g.output(hi!, 'hi');
    const text = dumpGraph(g);
    const lines = text.split('\n');

    expect(lines[0]).toContain('graph mlp');
    expect(lines).toContain('  %x: float32[batch, 16]');
    expect(text).toMatch(/%w1: float32\[16, 32\] +\(2\.0 KiB\)/);
    expect(text).toMatch(/%\/const\/int64: int64\[2\] = 4, 12/); // small constants show their values
    expect(lines).toContain('  /side/layers.0/up  MatMul(%x, %w1) -> float32[batch, 32]');
    expect(lines).toContain('  /side/layers.0/Add  Add(%/side/layers.0/up, %b1) -> float32[batch, 32]');
    expect(lines).toContain('  /side/head/MatMul  MatMul(%/side/layers.0/Relu, %w2) -> float32[batch, 8]');
    expect(lines).toContain(
      '  /Split  Split(%x, %/const/int64) {axis=1} -> (float32[batch, 4], float32[batch, 12])',
    );
    expect(lines).toContain('  /outputs/hi  Identity(%/Split:1) -> %hi: float32[batch, 12]');
    expect(lines.at(-4)).toBe('outputs (3)');
    expect(lines.at(-1)).toBe('  %hi: float32[batch, 12]');
    // one line per node
    expect(lines.filter((l) => /^ {2}\/\S+ {2}\w/.test(l))).toHaveLength(g.nodes.length);
  });
});
