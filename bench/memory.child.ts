// One configuration of `npm run bench -- memory` in its own process, so its peak RSS is its own.
// argv[2]: JSON { method, T, B, ckpt, cache, steps }, method one of
//   build-qlora  both QLoRA steps, built and saved (not measured)
//   qlora        QLoRA, no gradient checkpointing
//   qlora-ckpt   QLoRA with per-block gradient checkpointing
//   lst          LST through the trainer, every saver on (block recompute, float16 taps, taps
//                parked on disk between phases; BENCH_SCHEDULE=interleaved drops the last)
//   lst-seed     LST as the seed runs it: none of them (memory.seed.ts)
//   xladder      xLadder through the trainer, as lst
//   build-inference  the inference build, made and cached (not measured)
//   inference    the backbone alone as a server runs it (4-bit, last-position logits, no taps):
//                one prefill of B x T tokens
//   lst-epochs   LST through the trainer for 3 epochs of 2W examples, `activationCache` on or off;
//                reports each epoch's wall time (epochs 2..n read the cache and skip the backbone)
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Backbone, loadConfig, openCheckpoint } from '../gpu-worker/src/backbone/index.ts';
import { ExternalDataWriter, saveModel } from '../gpu-worker/src/graph/index.ts';
import { collectGarbage, i64, TRAINING_SESSION, TrainRunner } from '../gpu-worker/src/runtime/index.ts';
import type { TrainingExample } from '../gpu-worker/src/side-net/data/index.ts';
import { buildQloraTrainStep } from '../gpu-worker/src/side-net/qlora.ts';
import { trainSideNet } from '../gpu-worker/src/side-net/trainer/index.ts';
import { seedLstSteps } from './memory.seed.ts';
import { median } from './stats.ts';

const arg = JSON.parse(process.argv[2]!) as {
  method:
    | 'build-qlora'
    | 'build-inference'
    | 'lst'
    | 'lst-seed'
    | 'xladder'
    | 'qlora'
    | 'qlora-ckpt'
    | 'inference'
    | 'lst-epochs';
  /** lst-epochs only: epochs 2..n read the activation cache. */
  activationCache?: boolean;
  T: number;
  B: number;
  ckpt: string;
  cache: string;
  steps: number;
  /** QLoRA only: false times its first step instead of the ones after a warm-up step (default true). */
  warmup?: boolean;
  /** lst-seed only: turn savers back on one at a time (to check the driver against the trainer). */
  seed?: { recompute?: boolean; tapDtype?: 'float32' | 'float16' };
};
const cfg = await loadConfig(arg.ckpt);
const { T, B } = arg;
const rowsOf = (f: (b: number, t: number) => number) =>
  Array.from({ length: B * T }, (_, i) => f(Math.floor(i / T), i % T));
const ids = rowsOf((b, t) => 256 + ((b * 7919 + t * 31) % 20000));
const labels = rowsOf((b, t) => (t < T / 4 ? -100 : 256 + ((b * 104729 + t * 17) % 20000))); // prompt masked
const mask = rowsOf(() => 1);
const positions = rowsOf((_, t) => t);
const QLORA_DIRS = { qlora: false, 'qlora-ckpt': true } as const; // dir -> gradient checkpointing

if (arg.method === 'build-qlora') {
  // Built in its own process and saved, so the measured process loads it like the side net's
  // backbone is loaded: no JS-side copy of the weights in either.
  for (const [dir, gradientCheckpointing] of Object.entries(QLORA_DIRS)) {
    const source = await openCheckpoint(arg.ckpt);
    const { graph, layout, init } = await buildQloraTrainStep(cfg, source, { gradientCheckpointing });
    mkdirSync(join(arg.cache, dir), { recursive: true });
    const model = join(arg.cache, dir, 'model.onnx');
    saveModel(graph, model, { dataWriter: new ExternalDataWriter(`${model}.data`) });
    writeFileSync(join(arg.cache, dir, 'layout.json'), JSON.stringify(layout));
    const order = layout.params.map((p: { name: string }) => p.name);
    writeFileSync(
      join(arg.cache, dir, 'init.bin'),
      Buffer.concat(order.map((n: string) => Buffer.from(init[n]!.buffer))),
    );
    await source.close();
  }
  console.log(JSON.stringify({ built: true }));
  process.exit(0);
}

// The trainer's backbone-pass session options (no arena, no memory pattern): the leanest settings,
// so the ratio against training is not flattered by an inference run holding an arena.
const openInference = () =>
  Backbone.open(arg.ckpt, {
    cacheDir: join(arg.cache, 'inference'),
    graph: { logits: 'last' },
    session: { ...TRAINING_SESSION, memoryPattern: false },
  });
if (arg.method === 'build-inference') {
  // Built (quantized and saved) in its own process, as a worker finds it in its build cache.
  await openInference();
  console.log(JSON.stringify({ built: true }));
  process.exit(0);
}

// Sessions run as the trainer runs them: TRAINING_SESSION (no onnxruntime memory arena, the memory
// pattern on) for QLoRA's step as for the side step, whose trainer also runs the backbone pass
// without a pattern (BackbonePlan.open).
const times: number[] = [];
let windowMs: number | undefined;
let epochMs: number[] | undefined;
let cacheReport: unknown;
if (arg.method === 'inference') {
  const backbone = await openInference();
  for (let s = 0; s < Math.max(1, arg.steps); s++) {
    const start = performance.now();
    const rows = Array.from({ length: B }, (_, b) => ids.slice(b * T, (b + 1) * T));
    await backbone.stepper.step({
      ids: rows,
      mask: rows.map((r) => r.map(() => 1)),
      positions: rows.map((r) => r.map((_, t) => t)),
    });
    await collectGarbage();
    times.push(performance.now() - start);
  }
} else if (arg.method === 'lst-epochs') {
  const W = Math.max(2, arg.steps);
  const examples = benchExamples(2 * W);
  const ends: number[] = [];
  let epoch = 0;
  const t0 = performance.now();
  const result = await trainSideNet({
    modelDir: arg.ckpt,
    buildCacheDir: arg.cache,
    sideNet: { preset: 'lst' },
    train: examples,
    hyperparameters: { epochs: 3, tokenBudget: B * T, maxBatchSize: B, warmup: { steps: 0 } },
    taps: { kind: 'phased', maxBatches: W, dir: join(arg.cache, 'taps') },
    ...(arg.activationCache
      ? { activationCache: { dir: join(arg.cache, 'activations'), maxBytes: 2 * 1024 ** 3 } }
      : {}),
    onProgress: (p) => {
      if (p.epoch !== epoch) ends.push(performance.now());
      else ends[ends.length - 1] = performance.now();
      epoch = p.epoch;
    },
  });
  epochMs = ends.map((e, i) => e - (i === 0 ? t0 : ends[i - 1]!));
  cacheReport = result.summary.activationCache;
  times.push(...epochMs);
} else if (arg.method === 'qlora' || arg.method === 'qlora-ckpt') {
  const dir = join(arg.cache, arg.method);
  const layout = JSON.parse(readFileSync(join(dir, 'layout.json'), 'utf8'));
  const blob = readFileSync(join(dir, 'init.bin'));
  const init: Record<string, Float32Array> = {};
  let at = 0;
  for (const p of layout.params as { name: string; shape: number[] }[]) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    init[p.name] = new Float32Array(blob.buffer.slice(blob.byteOffset + at, blob.byteOffset + at + 4 * n));
    at += 4 * n;
  }
  const runner = await TrainRunner.create({ layout, step: join(dir, 'model.onnx') }, init, {
    session: TRAINING_SESSION,
  });
  const skip = arg.warmup === false ? 0 : 1;
  for (let s = 0; s < arg.steps + skip; s++) {
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
    if (s >= skip) times.push(performance.now() - start);
  }
} else if (arg.method === 'lst-seed') {
  // As many updates as the trainer's two windows (2 x W), the second half timed.
  const W = Math.max(2, arg.steps);
  const run = { ckpt: arg.ckpt, cache: arg.cache, T, B, steps: W, ids, labels, ...arg.seed };
  times.push(...(await seedLstSteps(run)));
} else {
  // The trainer itself (trainSideNet), on B x 2W examples of length T: two windows of W
  // micro-batches, one update each. The first window loads everything; the second is timed, its
  // backbone load included, so a step is charged 1/W of a load (the default schedule allows 32
  // micro-batches of this size per window: W is pessimistic). BENCH_SCHEDULE=interleaved runs the
  // backbone and the side step alternately instead, both loaded throughout.
  const W = Math.max(2, arg.steps);
  const examples = benchExamples(2 * W);
  const sideNet =
    arg.method === 'lst'
      ? ({ preset: 'lst' } as const)
      : ({ preset: 'xladder', delta: Math.max(1, cfg.layers / 4) } as const);
  const finished: number[] = [];
  const result = await trainSideNet({
    modelDir: arg.ckpt,
    buildCacheDir: arg.cache,
    sideNet,
    train: examples,
    hyperparameters: { epochs: 1, tokenBudget: B * T, maxBatchSize: B, warmup: { steps: 0 } },
    taps:
      process.env.BENCH_SCHEDULE === 'interleaved'
        ? { kind: 'interleaved' }
        : { kind: 'phased', maxBatches: W, dir: join(arg.cache, 'taps') },
    onProgress: () => {
      finished.push(performance.now());
    },
  });
  if (result.summary.steps !== 2 * W)
    throw new Error(`expected ${2 * W} updates, got ${result.summary.steps}`);
  for (let s = W; s < 2 * W; s++) times.push(finished[s]! - finished[s - 1]!);
  windowMs = finished[2 * W - 1]! - finished[W - 1]!;
}
console.log(
  JSON.stringify({
    method: arg.method,
    ...(epochMs ? { epoch_ms: epochMs.map(Math.round), activation_cache: cacheReport ?? null } : {}),
    T,
    B,
    // Side nets: a step is the timed window's wall time over its micro-batches (passes, loads and
    // side steps); steps_ms are the gaps between its updates (the first one waits for the passes).
    step_ms: Math.round(windowMs === undefined ? median(times) : windowMs / times.length),
    steps_ms: times.map(Math.round),
    peak_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  }),
);

/** `updates` x B examples of length T, one micro-batch of B per update. */
function benchExamples(updates: number): TrainingExample[] {
  return Array.from({ length: B * updates }, (_, i) => {
    const row = i % B;
    const at = (r: number[]) => Int32Array.from(r.slice(row * T, (row + 1) * T));
    const targets = at(labels);
    return {
      line: i + 1,
      inputIds: at(ids),
      labels: targets,
      targetCount: targets.filter((l) => l !== -100).length,
      truncated: 'none',
    };
  });
}
