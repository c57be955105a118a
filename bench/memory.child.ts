// One configuration of `npm run bench -- memory` in its own process, so its peak RSS is its own.
// argv[2]: JSON { method: 'build-qlora' | 'lst' | 'xladder' | 'qlora', T, B, ckpt, cache, steps }.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadConfig, openCheckpoint } from '../gpu-worker/src/backbone/index.ts';
import {
  buildTrainStep,
  ExternalDataWriter,
  saveModel,
  toModelBytes,
} from '../gpu-worker/src/graph/index.ts';
import {
  collectGarbage,
  f32,
  i64,
  type Tensor,
  TRAINING_SESSION,
  TrainRunner,
} from '../gpu-worker/src/runtime/index.ts';
import {
  initSideNet,
  lstPreset,
  resolveSideNet,
  SIDE_IO,
  sideTrainSpec,
  xladderPreset,
} from '../gpu-worker/src/side-net/index.ts';
import { buildQloraTrainStep } from '../gpu-worker/src/side-net/qlora.ts';
import { BackbonePass } from '../gpu-worker/src/side-net/trainer/index.ts';
import { median } from './stats.ts';

const arg = JSON.parse(process.argv[2]!) as {
  method: 'build-qlora' | 'lst' | 'xladder' | 'qlora';
  T: number;
  B: number;
  ckpt: string;
  cache: string;
  steps: number;
};
const cfg = await loadConfig(arg.ckpt);
const { T, B } = arg;
const rowsOf = (f: (b: number, t: number) => number) =>
  Array.from({ length: B * T }, (_, i) => f(Math.floor(i / T), i % T));
const ids = rowsOf((b, t) => 256 + ((b * 7919 + t * 31) % 20000));
const labels = rowsOf((b, t) => (t < T / 4 ? -100 : 256 + ((b * 104729 + t * 17) % 20000))); // prompt masked
const mask = rowsOf(() => 1);
const positions = rowsOf((_, t) => t);
const qloraModel = join(arg.cache, 'qlora', 'model.onnx');

if (arg.method === 'build-qlora') {
  // Built in its own process and saved, so the measured process loads it like the side net's
  // backbone is loaded: no JS-side copy of the weights in either.
  const source = await openCheckpoint(arg.ckpt);
  const { graph, layout, init } = await buildQloraTrainStep(cfg, source);
  const writer = new ExternalDataWriter(`${qloraModel}.data`);
  saveModel(graph, qloraModel, { dataWriter: writer });
  writeFileSync(join(arg.cache, 'qlora', 'layout.json'), JSON.stringify(layout));
  const order = layout.params.map((p: { name: string }) => p.name);
  writeFileSync(
    join(arg.cache, 'qlora', 'init.bin'),
    Buffer.concat(order.map((n: string) => Buffer.from(init[n]!.buffer))),
  );
  await source.close();
  console.log(JSON.stringify({ built: true }));
  process.exit(0);
}

// Sessions run as the trainer runs them (TRAINING_SESSION: no onnxruntime memory arena; the side
// nets' backbone pass also without a memory pattern, BackbonePass's default), the same for every
// method. BENCH_TRAIN_ARENA=1 turns the arena on for the training steps (LST's side step and
// QLoRA's step), BENCH_ARENA=1 for the backbone pass; BENCH_PATTERN=0 turns the memory pattern off
// for every session, BENCH_PASS_PATTERN=1 on for the backbone pass.
// BENCH_SKIP_SIDE=1 runs the side nets' backbone pass alone, to split their peak in two.
const arena = (flag: string | undefined) => flag === '1' || TRAINING_SESSION.memoryArena;
const SESSION = {
  memoryArena: arena(process.env.BENCH_TRAIN_ARENA),
  memoryPattern: process.env.BENCH_PATTERN !== '0',
};
const BACKBONE_SESSION = {
  memoryArena: arena(process.env.BENCH_ARENA),
  ...(process.env.BENCH_PATTERN === '0' ? { memoryPattern: false } : {}),
  ...(process.env.BENCH_PASS_PATTERN === '1' ? { memoryPattern: true } : {}),
};
const times: number[] = [];
const backboneTimes: number[] = [];
if (arg.method === 'qlora') {
  const layout = JSON.parse(readFileSync(join(arg.cache, 'qlora', 'layout.json'), 'utf8'));
  const blob = readFileSync(join(arg.cache, 'qlora', 'init.bin'));
  const init: Record<string, Float32Array> = {};
  let at = 0;
  for (const p of layout.params as { name: string; shape: number[] }[]) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    init[p.name] = new Float32Array(blob.buffer.slice(blob.byteOffset + at, blob.byteOffset + at + 4 * n));
    at += 4 * n;
  }
  const runner = await TrainRunner.create({ layout, step: qloraModel }, init, { session: SESSION });
  for (let s = 0; s < arg.steps + 1; s++) {
    const start = performance.now();
    await runner.step(
      {
        input_ids: i64(ids, [B, T]),
        labels: i64(labels, [B, T]),
        attention_mask: i64(mask, [B, T]),
        position_ids: i64(positions, [B, T]),
      },
      1e-4,
    );
    await collectGarbage();
    if (s > 0) times.push(performance.now() - start);
  }
} else {
  const config = arg.method === 'lst' ? lstPreset(cfg) : xladderPreset(cfg, Math.max(1, cfg.layers / 4));
  const shape = resolveSideNet(cfg, config);
  // The trainer's own backbone pass: no KV cache, only the side net's taps fetched.
  const backbone = await BackbonePass.open(arg.ckpt, arg.cache, shape, {}, BACKBONE_SESSION);
  const head = f32(await backbone.lmHead(), [cfg.vocabSize, cfg.hiddenSize]); // as the trainer does
  // BENCH_RECOMPUTE=0 keeps the side blocks' activations instead of recomputing them (the default).
  const { graph, layout } = buildTrainStep(
    sideTrainSpec(shape, { recompute: process.env.BENCH_RECOMPUTE !== '0' }),
  );
  const runner = await TrainRunner.create({ layout, step: toModelBytes(graph) }, initSideNet(shape, 1), {
    session: SESSION,
  });
  const batch = {
    indices: Array.from({ length: B }, (_, b) => b),
    size: B,
    length: T,
    inputIds: BigInt64Array.from(ids, BigInt),
    labels: BigInt64Array.from(labels, BigInt),
    attentionMask: BigInt64Array.from(mask, BigInt),
    positionIds: BigInt64Array.from(positions, BigInt),
    tokens: B * T,
    targets: labels.filter((l) => l !== -100).length,
  };
  // As the trainer runs a micro-batch: in a function of its own, so the taps die with its frame,
  // and collected right after.
  const step = async () => {
    const feeds: Record<string, Tensor> = {
      ...(await backbone.run(batch)),
      [SIDE_IO.lmHead]: head,
      [SIDE_IO.labels]: i64(labels, [B, T]),
      [SIDE_IO.mask]: i64(mask, [B, T]),
      [SIDE_IO.positions]: i64(positions, [B, T]),
    };
    const backboneDone = performance.now();
    if (process.env.BENCH_SKIP_SIDE !== '1') await runner.step(feeds, 1e-4);
    return backboneDone;
  };
  for (let s = 0; s < arg.steps + 1; s++) {
    const start = performance.now();
    const backboneDone = await step();
    await collectGarbage();
    if (s > 0) {
      times.push(performance.now() - start);
      backboneTimes.push(backboneDone - start);
    }
  }
}
console.log(
  JSON.stringify({
    method: arg.method,
    T,
    B,
    step_ms: Math.round(median(times)),
    steps_ms: times.map(Math.round),
    ...(backboneTimes.length
      ? {
          backbone_ms: Math.round(median(backboneTimes)),
        }
      : {}),
    peak_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  }),
);
