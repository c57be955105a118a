import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsAdapterStore } from '../../../adapters/index.ts';
import { readHeader } from '../../../gpu-worker/src/backbone/checkpoint/safetensors.ts';
import {
  Backbone,
  type BackboneTokenizer,
  generate,
  loadTokenizer,
  openCheckpoint,
} from '../../../gpu-worker/src/backbone/index.ts';
import { HF_NAMES } from '../../../gpu-worker/src/backbone/types.ts';
import { toModelBytes } from '../../../gpu-worker/src/graph/index.ts';
import { createSession, f32 } from '../../../gpu-worker/src/runtime/index.ts';
import {
  classificationPrompt,
  collate,
  DatasetError,
  prepareDataset,
  type TrainingExample,
} from '../../../gpu-worker/src/side-net/data/index.ts';
import {
  ActivationCache,
  AdapterStepper,
  adapterTensors,
  BackbonePass,
  buildSideInferenceGraph,
  type CheckpointSink,
  checkpointStoreSink,
  decodeHalf,
  directorySink,
  encodeHalf,
  fromHalfBits,
  HALF_MAX,
  learningRateAt,
  loadLmHead,
  lstPreset,
  manifestTraining,
  prunedSideNetInit,
  resolveSideNet,
  SIDE_IO,
  SideEvaluator,
  type SideNetShape,
  sideNetParams,
  TrainingAbortedError,
  type TrainProgress,
  type TrainResult,
  type TrainSideNetOptions,
  toHalfBits,
  trainSideNet,
  xladderPreset,
} from '../../../gpu-worker/src/side-net/index.ts';
import { rng } from '../../helpers/gradcheck.ts';
import { type TinyCheckpoint, writeTinyCheckpoint } from '../../helpers/tiny-checkpoint.ts';

let root: string;
let ckpt: TinyCheckpoint;
let tok: BackboneTokenizer;
let buildCacheDir: string;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'ladder-trainer-'));
  ckpt = await writeTinyCheckpoint(join(root, 'llama'), {
    architecture: 'llama',
    layers: 3,
    hidden: 64,
    seed: 1,
  });
  tok = await loadTokenizer(ckpt.dir);
  buildCacheDir = join(root, 'builds');
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------
// Data and helpers

const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join('\n');

/** Key -> value recall: "k17 =" -> " v{(17*5+3) % 8}". */
function recall(n: number) {
  const pairs = Array.from({ length: n }, (_, i) => ({
    prompt: `k${i} =`,
    completion: ` v${(i * 5 + 3) % 8}`,
  }));
  return { pairs, examples: prepareDataset(jsonl(pairs), tok, { maxLength: 32 }).examples };
}

/**
 * Two-word texts holding one marker word (single tokens of the tiny BPE: " the", " and", " of" mark
 * "warm"; " is", " World", " system" mark "cool") and a filler, in either order. Half the texts
 * are held out: the net has to find the marker, not remember the pairs.
 */
function markers() {
  const warm = ['the', 'and', 'of'];
  const cool = ['is', 'World', 'system'];
  const fillers = ['box', 'cat', 'sky', 'map', 'pen', 'cup', 'hat', 'owl', 'dog', 'sun', 'car', 'bed'];
  const all: { text: string; label: string }[] = [];
  for (const m of [...warm, ...cool])
    for (const f of fillers)
      for (const first of [true, false])
        all.push({ text: first ? `${m} ${f}` : `${f} ${m}`, label: warm.includes(m) ? 'warm' : 'cool' });
  // Both orders of every marker and filler reach training; each held-out text is new.
  const train = all.filter((_, i) => i % 4 === 0 || i % 4 === 3);
  const val = all.filter((_, i) => i % 4 === 1 || i % 4 === 2);
  const tr = prepareDataset(jsonl(train), tok, { maxLength: 64 });
  const validation = prepareDataset(jsonl(val), tok, { maxLength: 64, labels: tr.labels! }).examples;
  return { val, train: tr.examples, validation };
}

/** One thread per session: these models are too small to share out, and the machine may be busy. */
const session = { intraOpThreads: 1 };

async function train(opts: Partial<TrainSideNetOptions> & Pick<TrainSideNetOptions, 'train'>) {
  const progress: TrainProgress[] = [];
  const result = await trainSideNet({
    modelDir: ckpt.dir,
    buildCacheDir,
    sideNet: { preset: 'lst', overrides: { reduction_factor: 2 } },
    session,
    ...opts,
    onProgress: async (p) => {
      progress.push(p);
      await opts.onProgress?.(p);
    },
  });
  return { result, progress, losses: progress.map((p) => p.loss) };
}

/** Greedy completions with the adapter: backbone step, then side step, each with its KV cache. */
async function complete(result: TrainResult, weights: Record<string, Float32Array>, prompts: string[]) {
  // Generation's backbone: the side net's taps, with the KV cache the training pass leaves out.
  const backbone = await generationBackbone(result.shape);
  const side = await createSession(toModelBytes(buildSideInferenceGraph(result.shape)), session);
  const cfg = backbone.config;
  const head = f32(await loadLmHead(ckpt.dir, cfg), [cfg.vocabSize, cfg.hiddenSize]);
  const stepper = new AdapterStepper(
    backbone.stepper,
    side,
    result.shape,
    adapterTensors(result.shape, weights),
    head,
  );
  const out = await generate(
    stepper,
    prompts.map((p) => ({
      prompt: tok.encode(p, { addSpecialTokens: true }),
      params: { maxTokens: 6, stopTokenIds: [...tok.stopTokenIds] },
    })),
    { detokenize: (ids) => tok.decode(ids, { skipSpecialTokens: true }), padId: tok.padTokenId ?? 0 },
  );
  await Promise.all([backbone.dispose(), side.dispose()]);
  return out.map((r) => r.text ?? '');
}

/** The served backbone with the side net's taps (KV cache, ids in the graph, full attention). */
function generationBackbone(shape: SideNetShape): Promise<Backbone> {
  return Backbone.open(ckpt.dir, {
    cacheDir: buildCacheDir,
    graph: { taps: [...shape.taps], logits: 'none' },
    session,
  });
}

const range = (from: number, to: number) =>
  Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

const paramShape = (result: TrainResult, name: string) =>
  sideNetParams(result.shape).find((p) => p.name === name)!.shape;

const exactMatch = (got: string[], want: string[]) =>
  got.filter((g, i) => g === want[i]).length / want.length;

// ---------------------------------------------------------------------------------------------

describe('fp16 conversion of the activation cache', () => {
  it('round-trips every half exactly, and rounds floats to the nearest half, ties to even', () => {
    const halves = new Uint16Array(65536).map((_, i) => i);
    const floats = new Float32Array(65536);
    decodeHalf(halves, floats);
    const back = new Uint16Array(65536);
    encodeHalf(floats, back);
    for (let h = 0; h < 65536; h++) {
      if (Number.isNaN(floats[h]!)) expect(Number.isNaN(fromHalfBits(back[h]!))).toBe(true);
      else if (back[h] !== h) expect.fail(`half 0x${h.toString(16)} came back as 0x${back[h]!.toString(16)}`);
    }
    // Reference: the neighbours of the chosen half (by decoding), never nearer; a tie picks the even one.
    const r = rng(9);
    const samples = [
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      2 ** -25,
      2 ** -25 * (1 + 2 ** -20),
      3 * 2 ** -26,
      65519,
      6.1e-5,
      -0.1,
    ];
    for (let i = 0; i < 20000; i++) samples.push((r() * 2 - 1) * 2 ** Math.floor(r() * 40 - 26));
    for (const x of samples.map(Math.fround)) {
      const h = toHalfBits(x);
      const err = Math.abs(fromHalfBits(h) - x);
      for (const n of [h - 1, h + 1]) {
        if ((n & 0x7fff) >= 0x7c00 || n < 0 || (n & 0x8000) !== (h & 0x8000)) continue;
        const other = Math.abs(fromHalfBits(n) - x);
        expect(err <= other, `${x}: 0x${h.toString(16)} vs 0x${n.toString(16)}`).toBe(true);
        if (err === other) expect(h & 1, `${x}: a tie must go to the even half`).toBe(0);
      }
    }
    expect(toHalfBits(1 + 2 ** -11)).toBe(0x3c00); // tie between 1 and 1+2^-10: even (1)
    expect(toHalfBits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie: even (1 + 2^-9)
    expect(toHalfBits(2 ** -25)).toBe(0); // tie between 0 and the smallest subnormal
    expect(toHalfBits(2 ** -25 * (1 + 2 ** -20))).toBe(1);
    expect(toHalfBits(65519)).toBe(0x7bff);
    expect(toHalfBits(65520)).toBe(0x7c00); // rounds past the largest finite half
    expect(toHalfBits(-0)).toBe(0x8000);
    const overflow = new Uint16Array(3);
    expect(encodeHalf(Float32Array.of(1, 70000, Number.POSITIVE_INFINITY), overflow)).toBe(1);
    expect(encodeHalf(Float32Array.of(1, Number.POSITIVE_INFINITY, -2), overflow)).toBe(-1); // inf is no overflow
  });
});

describe('the learning-rate schedule', () => {
  it('warms up linearly, then follows the half cosine to the floor (closed form)', () => {
    const peak = 3e-3;
    const s = { peak, warmupSteps: 10, totalSteps: 110, minRatio: 0.1 };
    for (let t = 1; t <= 10; t++) expect(learningRateAt(t, s)).toBeCloseTo((peak * t) / 10, 15);
    // Closed form at quarter points of the decay: cos(pi p) = 1, sqrt(2)/2, 0, -sqrt(2)/2, -1.
    const at = (p: number) => peak * (0.1 + 0.9 * ((1 + Math.cos(Math.PI * p)) / 2));
    expect(learningRateAt(35, s)).toBeCloseTo(peak * (0.1 + (0.9 * (1 + Math.SQRT1_2)) / 2), 15);
    expect(learningRateAt(60, s)).toBeCloseTo(peak * 0.55, 15);
    expect(learningRateAt(85, s)).toBeCloseTo(peak * (0.1 + (0.9 * (1 - Math.SQRT1_2)) / 2), 15);
    expect(learningRateAt(110, s)).toBeCloseTo(peak * 0.1, 15);
    for (let t = 11; t <= 110; t++) expect(learningRateAt(t, s)).toBeCloseTo(at((t - 10) / 100), 15);
    expect(learningRateAt(1, { ...s, warmupSteps: 0 })).toBeCloseTo(at(1 / 110), 15);
  });
});

describe('training LST and xLadder side nets', () => {
  it('LST learns key -> value recall; the published adapter generates every answer', async () => {
    const { pairs, examples } = recall(24);
    const { result, losses, progress } = await train({
      train: examples,
      hyperparameters: { epochs: 300, learningRate: 1e-2, warmup: { steps: 5 }, tokenBudget: 256 },
    });
    expect(result.summary.batchesPerEpoch).toBe(1);
    expect(result.summary.steps).toBe(300);
    expect(progress.map((p) => p.step)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(losses.at(-1)!).toBeLessThan(losses[0]! / 20);
    const tokens = examples.reduce((n, e) => n + e.inputIds.length, 0);
    expect(result.summary.tokensSeen).toBe(tokens * 300);
    expect(result.summary.billableTokens).toBe(tokens * 300);

    // Publish, read back verified, generate from the stored weights.
    const store = new FsAdapterStore({
      tenant: 'acme',
      dataDir: join(root, 'store'),
      backboneFingerprint: result.backbone.fingerprint,
    });
    await store.put({
      adapterId: 'recall',
      version: 1,
      name: 'recall',
      backbone: { name: 'tiny-llama', fingerprint: result.backbone.fingerprint },
      sideNet: result.sideNet,
      training: manifestTraining(result.summary, 'job-recall'),
      weights: result.toAdapterWeights(),
    });
    const stored = await store.get('recall', 1);
    const weights = Object.fromEntries(
      [...stored.tensors].map(([name, t]) => [name, new Float32Array(t.data.slice().buffer)]),
    );
    const got = await complete(
      result,
      weights,
      pairs.map((p) => p.prompt),
    );
    expect(
      exactMatch(
        got,
        pairs.map((p) => p.completion),
      ),
    ).toBeGreaterThanOrEqual(0.95);
  });

  it('xLadder (2 micro-batches per update) classifies held-out texts: argmin-loss accuracy and generation', async () => {
    const { train: trainSet, validation, val } = markers();
    const { result, losses } = await train({
      sideNet: { preset: 'xladder', delta: 2, overrides: { reduction_factor: 2 } },
      train: trainSet,
      validation,
      hyperparameters: {
        epochs: 120,
        learningRate: 1e-2,
        warmup: { steps: 5 },
        tokenBudget: 1024,
        microBatches: 2,
      },
    });
    expect(result.shape.layers).toEqual([2, 3, undefined, undefined]);
    expect(result.summary.batchesPerEpoch).toBe(2);
    expect(result.summary.steps).toBe(120);
    expect(result.labels).toEqual(['cool', 'warm']);
    expect(losses.at(-1)!).toBeLessThan(0.2);
    const acc = result.summary.accuracy!;
    expect(acc.total).toBe(validation.length);
    // Chance is 0.5; with token-weighted accumulation and 10x gate rate this config scores ~0.94.
    expect(acc.accuracy).toBeGreaterThanOrEqual(0.9);
    expect(result.summary.finalEvalLoss!).toBeLessThan(0.3);

    // The two evaluation models agree: per-row sums of the scoring model's token losses (the
    // gathered rows through the full head) add up to the chunked loss model's mean x targets.
    const evaluator = await SideEvaluator.create(
      result.shape,
      f32(await loadLmHead(ckpt.dir, ckpt.config), [ckpt.config.vocabSize, 64]),
      { session },
    );
    const pass = await BackbonePass.open(ckpt.dir, buildCacheDir, result.shape, {}, session);
    const params = Object.fromEntries(
      Object.entries(result.params).map(([n, w]) => [n, f32(w, paramShape(result, n))]),
    );
    const batch = collate(validation, [0, 5, 9, 20], tok.padTokenId!);
    const backbone = await pass.run(batch);
    const rows = await evaluator.rowLosses(params, batch, backbone);
    const mean = await evaluator.loss(params, batch, backbone);
    expect(rows.reduce((a, b) => a + b, 0) / batch.targets).toBeCloseTo(mean, 5);
    await Promise.all([evaluator.dispose(), pass.dispose()]);

    const got = await complete(
      result,
      result.params,
      val.map((v) => classificationPrompt(v.text)),
    );
    expect(
      exactMatch(
        got,
        val.map((v) => ` ${v.label}`),
      ),
    ).toBeGreaterThanOrEqual(0.9);
  });
});

describe('initialisation', () => {
  it("config init 'pruned' starts from the backbone's pruned blocks; both inits start at the backbone", async () => {
    const { examples } = recall(8);
    const hp = { epochs: 1, learningRate: 1e-7, tokenBudget: 32 }; // two updates of at most ~1e-7 each
    const overrides = { reduction_factor: 2, init: 'pruned' } as const;
    const pruned = await train({
      train: examples,
      hyperparameters: hp,
      sideNet: { preset: 'lst', overrides },
    });
    const random = await train({ train: examples, hyperparameters: hp });
    expect(pruned.losses[0]).toBe(random.losses[0]); // Up = 0: step 0 is the backbone either way
    const source = await openCheckpoint(ckpt.dir);
    const want = await prunedSideNetInit(pruned.result.shape, ckpt.config, source, 0);
    await source.close();
    for (const name of ['layers.0.wq', 'layers.2.w_down', 'down.1.weight']) {
      const got = pruned.result.params[name]!;
      expect(Math.max(...got.map((v, i) => Math.abs(v - want[name]![i]!)))).toBeLessThan(1e-6);
      expect(got).not.toEqual(random.result.params[name]);
    }
  });
});

describe('checkpoints and resume', () => {
  // Dropout, two micro-batches per update (updates straddle epochs) and the activation cache:
  // everything a resume has to restore.
  const hyperparameters = {
    epochs: 4,
    learningRate: 5e-3,
    warmup: { ratio: 0.3 },
    tokenBudget: 64,
    microBatches: 2,
    seed: 7,
  } as const;
  const sideNet = { preset: 'lst', overrides: { reduction_factor: 2, dropout: 0.1 } } as const;

  it('an interrupted run resumed from its checkpoint continues the same loss sequence, bit for bit', async () => {
    const { examples } = recall(24);
    const cache = (name: string) => ({ dir: join(root, name), maxBytes: 1 << 30 });
    const whole = await train({
      train: examples,
      sideNet,
      hyperparameters,
      activationCache: cache('c-whole'),
    });
    const T = whole.result.summary.steps;
    expect(T).toBe(Math.ceil((whole.result.summary.batchesPerEpoch * 4) / 2));
    expect(whole.result.summary.activationCache.used).toBe(true);
    // The schedule the progress reports is the closed form: W = ceil(0.3 T) warmup updates, then the cosine.
    const W = Math.ceil(0.3 * T);
    whole.progress.forEach((p, i) => {
      const t = i + 1;
      const want =
        t <= W ? (5e-3 * t) / W : 5e-3 * (0.1 + 0.45 * (1 + Math.cos((Math.PI * (t - W)) / (T - W))));
      expect(p.lr).toBeCloseTo(want, 12);
    });

    // Stopped inside epoch 1 (the cache half written, found unsealed by the resumed run in the
    // same folder) and inside epoch 3 (resumed "on another machine": an empty cache folder, so
    // epoch 1's batches are run again to rebuild it).
    for (const [stopAt, firstDir, secondDir] of [
      [1, 'c-a', 'c-a'],
      [4, 'c-b', 'c-b2'],
    ] as const) {
      const sinkDir = join(root, `ckpt-resume-${stopAt}`);
      const savedSteps: number[] = [];
      const sink = (): CheckpointSink => {
        const inner = directorySink(sinkDir);
        return {
          loadLatest: () => inner.loadLatest(),
          save: async (step, data, meta) => {
            savedSteps.push(step);
            await inner.save(step, data, meta);
          },
        };
      };
      const controller = new AbortController();
      const err = await train({
        train: examples,
        sideNet,
        hyperparameters,
        activationCache: cache(firstDir),
        checkpoint: { sink: sink(), everySteps: 3 },
        signal: controller.signal,
        onProgress: (p) => {
          if (p.step === stopAt) controller.abort(new Error('preempted'));
        },
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TrainingAbortedError);
      expect(err).toMatchObject({ step: stopAt, checkpointStep: stopAt });
      const resumed = await train({
        train: examples,
        sideNet,
        hyperparameters,
        activationCache: cache(secondDir),
        checkpoint: { sink: sink(), everySteps: 3 },
      });
      expect(resumed.result.summary.resumedFromStep).toBe(stopAt);
      expect(resumed.progress.map((p) => p.step)).toEqual(range(stopAt + 1, T));
      expect(resumed.losses).toEqual(whole.losses.slice(stopAt));
      for (const [name, w] of Object.entries(whole.result.params))
        expect(resumed.result.params[name]).toEqual(w);
      expect(resumed.result.summary.tokensSeen).toBe(whole.result.summary.tokensSeen);
      expect(resumed.result.summary.finalTrainLoss).toBe(whole.result.summary.finalTrainLoss);
      expect(resumed.result.summary.activationCache.used).toBe(true);
      expect(resumed.result.summary.notes).toEqual([]);
      // Saved every 3 updates, on the abort and at the end; the directory keeps the newest two.
      const want = [...new Set([...range(1, stopAt).filter((t) => t % 3 === 0), stopAt])];
      want.push(...range(stopAt + 1, T).filter((t) => t % 3 === 0 && t !== stopAt));
      if (want.at(-1) !== T) want.push(T);
      expect(savedSteps).toEqual(want);
      expect(readdirSync(sinkDir).filter((f) => f.endsWith('.ckpt'))).toEqual(
        want.slice(-2).map((t) => `step-${String(t).padStart(12, '0')}.ckpt`),
      );
      expect(existsSync(join(root, secondDir, 'activations.f16'))).toBe(false); // removed when done
    }

    // A checkpoint of another run is refused, not silently continued.
    await expect(
      train({
        train: examples,
        sideNet,
        hyperparameters: { ...hyperparameters, learningRate: 1e-3 },
        checkpoint: { sink: directorySink(join(root, 'ckpt-resume-4')) },
      }),
    ).rejects.toThrow(/another run/);
  });

  it('checkpoints through an AdapterStore (latest pointer, verified bytes), by elapsed time', async () => {
    const { examples } = recall(8);
    const store = new FsAdapterStore({ tenant: 'acme', dataDir: join(root, 'store-ckpt') });
    const sink = checkpointStoreSink(store, 'job-1');
    expect(await sink.loadLatest()).toBeUndefined();
    const hp = { epochs: 2, tokenBudget: 32, seed: 3 };
    const { result, losses } = await train({
      train: examples,
      hyperparameters: hp,
      checkpoint: { sink, everySeconds: 0 }, // 0 s: due after every update
    });
    const latest = await store.checkpoints.latest('job-1');
    expect(latest?.record.step).toBe(result.summary.steps);
    expect(await store.checkpoints.steps('job-1')).toEqual([result.summary.steps - 1, result.summary.steps]); // keeps 2
    // Resuming a finished run goes straight to the end with the same weights.
    const again = await train({ train: examples, hyperparameters: hp, checkpoint: { sink } });
    expect(again.progress).toEqual([]);
    expect(again.result.summary.resumedFromStep).toBe(result.summary.steps);
    expect(again.result.summary.finalTrainLoss).toBe(result.summary.finalTrainLoss);
    expect(again.result.params).toEqual(result.params);
    expect(losses.length).toBe(result.summary.steps);
  });
});

describe('the tap schedule', () => {
  it('phased windows (across epochs, one batch or several) train bit for bit as interleaved passes', async () => {
    const { examples } = recall(24);
    const common = {
      train: examples,
      sideNet: { preset: 'lst', overrides: { reduction_factor: 2, dropout: 0.1 } },
      hyperparameters: { epochs: 3, learningRate: 5e-3, tokenBudget: 64, microBatches: 2, seed: 7 },
    } as const;
    const interleaved = await train({ ...common, taps: { kind: 'interleaved' } });
    const stageRoot = join(root, 'stage');
    mkdirSync(stageRoot);
    const staged: string[][] = [];
    const windows = await train({
      ...common,
      taps: { kind: 'phased', dir: stageRoot, maxBatches: 2 },
      onProgress: () => {
        staged.push(readdirSync(stageRoot));
      },
    });
    const single = await train({ ...common, taps: { kind: 'phased', dir: stageRoot, maxBytes: 1 } });
    const { batchesPerEpoch, steps } = interleaved.result.summary;
    expect(batchesPerEpoch % 2).toBe(1); // windows of 2 straddle epochs
    expect(steps).toBe(Math.ceil((batchesPerEpoch * 3) / 2));
    for (const run of [windows, single]) {
      expect(run.losses).toEqual(interleaved.losses);
      for (const [name, w] of Object.entries(interleaved.result.params))
        expect(run.result.params[name]).toEqual(w);
      expect(run.result.summary.tokensSeen).toBe(interleaved.result.summary.tokensSeen);
    }
    // The stage lives in its own folder while training runs, and is gone after.
    expect(staged.every((names) => names.length === 1 && names[0]!.startsWith('ladder-taps-'))).toBe(true);
    expect(readdirSync(stageRoot)).toEqual([]);
    await expect(train({ ...common, taps: { kind: 'phased', maxBatches: 0 } })).rejects.toThrow(
      /maxBatches \(0\) a positive integer/,
    );
  });
});

describe('the training backbone pass', () => {
  it('gives the taps of the generation backbone (ids in the graph, KV cache, full attention) for a padded batch', async () => {
    const { examples } = recall(8);
    const shape = resolveSideNet(ckpt.config, lstPreset(ckpt.config));
    // Its own lookup of token rows, no KV cache, attention over blocks of query rows.
    const pass = await BackbonePass.open(ckpt.dir, buildCacheDir, shape, {}, session);
    const reference = await generationBackbone(shape);
    const batch = collate(examples, [0, 3, 7], tok.padTokenId!);
    const rows = (xs: BigInt64Array) =>
      Array.from({ length: batch.size }, (_, b) =>
        Array.from(xs.subarray(b * batch.length, (b + 1) * batch.length), Number),
      );
    const { outputs: want } = await reference.stepper.run({
      ids: rows(batch.inputIds),
      mask: rows(batch.attentionMask),
      positions: rows(batch.positionIds),
    });
    const got = await pass.run(batch);
    // The taps come as float16: within half-precision rounding of the reference's (2^-11 relative).
    expect(pass.halfNames).toEqual(pass.names.filter((n) => n !== SIDE_IO.finalHidden));
    for (const name of pass.names) {
      const half = pass.halfNames.includes(name);
      expect(got[name]!.type, name).toBe(half ? 'float16' : 'float32');
      const a = half
        ? Float32Array.from(got[name]!.data as Uint16Array, fromHalfBits)
        : (got[name]!.data as Float32Array);
      const b = want[name]!.data as Float32Array;
      expect(a.length, name).toBe(b.length);
      const worst = a.reduce(
        (m, x, i) => Math.max(m, Math.abs(x - b[i]!) - (half ? Math.abs(b[i]!) * 2 ** -11 : 0)),
        0,
      );
      expect(worst, name).toBeLessThan(1e-4);
    }
    expect(pass.overflow).toEqual({ passes: 0, maxAbs: 0 });
    await Promise.all([pass.dispose(), reference.dispose()]);
  });
});

describe('the training backbone pass, past float16', () => {
  it("clamps taps past float16's range to 65504 and counts the passes that had them", async () => {
    const hot = await writeTinyCheckpoint(join(root, 'hot'), {
      architecture: 'llama',
      layers: 2,
      hidden: 64,
      seed: 3,
    });
    const { examples } = recall(4);
    // One embedding value of the second token of example 0 set to 1e5, in the safetensors file itself.
    const token = examples[0]!.inputIds[1]!;
    const d = hot.config.hiddenSize;
    const fh = await open(join(hot.dir, hot.files[0]!), 'r+');
    const { entries } = await readHeader(fh, hot.files[0]!);
    const huge = Buffer.alloc(4);
    huge.writeFloatLE(1e5);
    await fh.write(huge, 0, 4, entries.get(HF_NAMES.embed)!.begin + 4 * (token * d + 5));
    await fh.close();

    const shape = resolveSideNet(hot.config, lstPreset(hot.config));
    const pass = await BackbonePass.open(hot.dir, buildCacheDir, shape, {}, session);
    const batch = collate(examples, [0, 1], tok.padTokenId!);
    const out = await pass.run(batch);
    const tap0 = out[SIDE_IO.tap(0)]!.data as Uint16Array;
    expect(tap0[1 * d + 5]).toBe(toHalfBits(HALF_MAX)); // row 0, position 1, column 5
    expect(pass.overflow.passes).toBe(1);
    expect(pass.overflow.maxAbs).toBeGreaterThanOrEqual(1e5);
    await pass.run(collate(examples, [2, 3], tok.padTokenId!)); // a batch without that token
    expect(pass.overflow.passes).toBe(1);
    await pass.dispose();
  });
});

describe('the activation cache', () => {
  it('holds what the backbone computes for an example, in any batch, within fp16 rounding', async () => {
    const { examples } = recall(12);
    const shape = resolveSideNet(ckpt.config, xladderPreset(ckpt.config, 2, { reduction_factor: 2 }));
    const pass = await BackbonePass.open(ckpt.dir, buildCacheDir, shape, {}, session);
    const lengths = examples.map((e) => e.inputIds.length);
    const cache = ActivationCache.open(
      join(root, 'c-unit'),
      'k',
      pass.names,
      shape.d,
      lengths,
      pass.halfNames,
    );
    const pad = tok.padTokenId!;
    // Stored from two batches, read back in a third mixing them with other padding.
    for (const idx of [
      [0, 1, 2, 3, 4, 5],
      [6, 7, 8, 9, 10, 11],
    ]) {
      const b = collate(examples, idx, pad);
      expect(cache.capture(b, await pass.run(b))).toBeUndefined();
    }
    cache.seal();
    const mixed = collate(examples, [11, 0, 10, 5], pad);
    const direct = await pass.run(mixed);
    const cached = cache.read(mixed);
    for (const name of pass.names) {
      // The float16 taps come back bit for bit; the float32 final state within fp16 rounding.
      const half = pass.halfNames.includes(name);
      expect(cached[name]!.type, name).toBe(direct[name]!.type);
      const want = direct[name]!.data as Float32Array | Uint16Array;
      const got = cached[name]!.data as Float32Array | Uint16Array;
      mixed.indices.forEach((e, b) => {
        for (let i = 0; i < lengths[e]! * shape.d; i++) {
          const k = b * mixed.length * shape.d + i;
          if (half) expect(got[k]).toBe(want[k]);
          else expect(Math.abs(got[k]! - want[k]!)).toBeLessThanOrEqual(Math.abs(want[k]!) * 2 ** -11 + 1e-7);
        }
        for (let k = (b * mixed.length + lengths[e]!) * shape.d; k < (b + 1) * mixed.length * shape.d; k++)
          expect(got[k]).toBe(0);
      });
    }
    // A sealed cache with the same key is found again; another key starts afresh.
    cache.close();
    const again = ActivationCache.open(join(root, 'c-unit'), 'k', pass.names, shape.d, lengths);
    expect(again.complete).toBe(true);
    again.close();
    const fresh = ActivationCache.open(join(root, 'c-unit'), 'other', pass.names, shape.d, lengths);
    expect(fresh.complete).toBe(false);
    // A value fp16 cannot hold is refused (the trainer then recomputes the backbone instead).
    const b = collate(examples, [3], pad);
    const out = await pass.run(b);
    (out[SIDE_IO.finalHidden]!.data as Float32Array)[7] = 70000;
    expect(fresh.capture(b, out)).toMatch(
      /final_hidden of training example 3 holds 70000, past fp16's range/,
    );
    fresh.remove();
    await pass.dispose();
  });

  it('later epochs read it: same losses as recomputing (fp16 tolerance), and only within its budget', async () => {
    const { examples } = recall(24);
    const hyperparameters = { epochs: 3, learningRate: 5e-3, tokenBudget: 64, seed: 5 };
    const plain = await train({ train: examples, hyperparameters });
    const bytes = plain.result.summary.activationCache.bytes;
    expect(bytes).toBe(examples.reduce((n, e) => n + e.inputIds.length, 0) * 64 * 5 * 2); // taps 0-3, final
    const cached = await train({
      train: examples,
      hyperparameters,
      activationCache: { dir: join(root, 'c-fit'), maxBytes: bytes },
    });
    expect(cached.result.summary.activationCache).toMatchObject({
      enabled: true,
      used: true,
      bytes,
      reason: null,
    });
    const perEpoch = plain.result.summary.batchesPerEpoch;
    expect(cached.losses.slice(0, perEpoch)).toEqual(plain.losses.slice(0, perEpoch)); // epoch 1: the backbone itself
    expect(cached.losses.slice(perEpoch)).not.toEqual(plain.losses.slice(perEpoch)); // later: fp16 inputs
    cached.losses.forEach((l, i) => {
      expect(Math.abs(l - plain.losses[i]!)).toBeLessThan(1e-4 * plain.losses[i]!); // measured: <= 7e-6
    });

    const over = await train({
      train: examples,
      hyperparameters,
      activationCache: { dir: join(root, 'c-over'), maxBytes: bytes - 1 },
    });
    expect(over.result.summary.activationCache).toMatchObject({ enabled: true, used: false });
    expect(over.result.summary.activationCache.reason).toMatch(/over the .*budget/);
    expect(over.losses).toEqual(plain.losses);
    expect(existsSync(join(root, 'c-over', 'activations.f16'))).toBe(false);
  });
});

describe('bad data', () => {
  it('a dataset with errors never reaches training; malformed examples are refused before any step', async () => {
    const lines = `${jsonl([{ prompt: 'k1 =', completion: ' v1' }])}\n{"prompt": "k2 ="}`;
    expect(() => prepareDataset(lines, tok, { maxLength: 32 })).toThrow(DatasetError);

    const { examples } = recall(4);
    const broken: TrainingExample = {
      ...examples[1]!,
      inputIds: Int32Array.from(examples[1]!.inputIds, () => 9999),
    };
    const sinkDir = join(root, 'ckpt-bad');
    const progress: TrainProgress[] = [];
    await expect(
      trainSideNet({
        modelDir: ckpt.dir,
        buildCacheDir,
        sideNet: { preset: 'lst' },
        train: [examples[0]!, broken],
        checkpoint: { sink: directorySink(sinkDir), everySteps: 1 },
        onProgress: (p) => {
          progress.push(p);
        },
      }),
    ).rejects.toThrow(/training example 1 .*outside the vocabulary/);
    expect(progress).toEqual([]);
    expect(existsSync(sinkDir)).toBe(false);
  });
});
