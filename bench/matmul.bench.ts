// fp32 MatMul throughput of onnxruntime's CPU kernel: the ceiling a training step is measured against.
import { performance } from 'node:perf_hooks';
import { encodeModel, node, valueInfo } from '../gpu-worker/src/graph/proto.ts';
import { createSession, f32 } from '../gpu-worker/src/runtime/index.ts';

export async function matmulGflops(n: number, reps = 10): Promise<number> {
  const model = encodeModel({
    name: 'matmul',
    nodes: [node('MatMul', ['a', 'b'], ['c'])],
    inputs: [valueInfo('a', 'float32', [n, n]), valueInfo('b', 'float32', [n, n])],
    outputs: [valueInfo('c', 'float32', [n, n])],
  });
  const session = await createSession(model);
  const a = f32(
    Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5),
    [n, n],
  );
  const b = f32(
    Float32Array.from({ length: n * n }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5),
    [n, n],
  );
  await session.run({ a, b });
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await session.run({ a, b });
    times.push(performance.now() - t0);
  }
  await session.dispose();
  times.sort((x, y) => x - y);
  const median = times[Math.floor(times.length / 2)]!;
  return (2 * n ** 3) / (median / 1000) / 1e9;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const g1024 = await matmulGflops(1024);
  const g512 = await matmulGflops(512, 30);
  console.log(
    JSON.stringify({ bench: 'matmul', matmul_gflops: +g1024.toFixed(1), matmul512_gflops: +g512.toFixed(1) }),
  );
}
