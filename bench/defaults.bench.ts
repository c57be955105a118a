// Defaults only: small recall, classification (held-out lines) and chat files trained with every hyperparameter 'auto', as the worker trains them; resolved hyperparameters, steps, wall seconds, accuracy.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Hyperparameters } from '@ladder/schemas';
import { type BackboneConfig, loadConfig, loadTokenizer } from '../gpu-worker/src/backbone/index.ts';
import { jobTraining } from '../gpu-worker/src/jobs/training.ts';
import { f32 } from '../gpu-worker/src/runtime/index.ts';
import { collate, prepareDataset, type TrainingExample } from '../gpu-worker/src/side-net/data/index.ts';
import {
  BackbonePass,
  loadLmHead,
  SideEvaluator,
  sideNetParams,
  type TrainResult,
  trainSideNet,
} from '../gpu-worker/src/side-net/index.ts';
import { PRETRAINED_BACKBONE } from '../scripts/platform.ts';
import { writeTinyCheckpoint } from '../test/helpers/tiny-checkpoint.ts';

/**
 * The backbone: the one `npm start` serves (the pretrained models/ladder-base, loaded from its HF
 * directory and quantized to 4 bits by the same loader), or with BENCH_BACKBONE=random a random
 * tiny Llama (d=BENCH_D, default 128, BENCH_LAYERS layers, default 4), as a checkout without
 * ladder-base serves. BENCH_HP (JSON) overrides hyperparameters of every dataset (to measure other
 * rules); BENCH_GATE_LR_SCALE the gates' rate multiple; BENCH_ONLY a comma list of dataset names.
 */
const BACKBONE = process.env.BENCH_BACKBONE ?? 'ladder-base';
if (BACKBONE !== 'ladder-base' && BACKBONE !== 'random')
  throw new Error(`BENCH_BACKBONE must be ladder-base or random, got ${BACKBONE}`);
const D = Number(process.env.BENCH_D ?? 128);
const LAYERS = Number(process.env.BENCH_LAYERS ?? 4);
const OVERRIDE = JSON.parse(process.env.BENCH_HP ?? '{}') as Record<string, unknown>;
const GATE = process.env.BENCH_GATE_LR_SCALE ? Number(process.env.BENCH_GATE_LR_SCALE) : undefined;
const ONLY = process.env.BENCH_ONLY?.split(',');
const THREADS = Number(process.env.BENCH_THREADS ?? 1);
const MAX_LENGTH = 1024; // the worker's cap (jobs/runner.ts), lowered to the backbone's context

const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join('\n');
const COLORS = ['red', 'blue', 'green', 'gold', 'gray', 'pink', 'teal', 'plum'];

interface Dataset {
  name: string;
  train: string;
  /** Held-out lines (classification): the ones scored, and the trainer's validation set. */
  validation?: string;
  /**
   * 'exact': every distinct training prompt's completion is the side net's argmax at each token
   * (greedy decoding emits it exactly); 'labels': the same on the held-out lines, i.e. greedy
   * decoding emits exactly ` <label>` and eos.
   */
  score: 'exact' | 'labels';
}

/** `keys` distinct keys, each repeated: "<word><i> =" -> " <color>". */
function recall(name: string, keys: number, repeats: number, word: string): Dataset {
  const rows = [];
  for (let r = 0; r < repeats; r++)
    for (let i = 0; i < keys; i++)
      rows.push({ prompt: `${word}${i} =`, completion: ` ${COLORS[(i * 5 + 3) % COLORS.length]}` });
  return { name, train: jsonl(rows), score: 'exact' };
}

/** A seeded uniform generator in [0, 1) (mulberry32): the same datasets on every run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Texts of fillers and one marker word, the marker's group being the label: every text is
 * distinct, and the held-out texts (half as many as the training lines) are none of the training
 * texts, though their markers and fillers all occur in training (so the rule can be learned
 * from the training lines and nothing else tells the held-out labels).
 */
function classification(name: string, lines: number): Dataset {
  const groups: Record<string, string[]> = {
    warm: ['sun', 'fire', 'summer', 'heat'],
    cool: ['snow', 'ice', 'winter', 'frost'],
  };
  const fillers = ['box', 'cat', 'sky', 'map', 'pen', 'cup', 'hat', 'owl', 'dog', 'car', 'bed', 'tree'];
  const rand = random(21);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const seen = new Set<string>();
  const all: { text: string; label: string }[] = [];
  const want = lines + Math.ceil(lines / 2);
  while (all.length < want) {
    const label = all.length % 2 ? 'warm' : 'cool';
    const words = Array.from({ length: 2 + Math.floor(rand() * 3) }, () => pick(fillers));
    words.splice(Math.floor(rand() * (words.length + 1)), 0, pick(groups[label]!));
    const text = words.join(' ');
    if (seen.has(text)) continue;
    seen.add(text);
    all.push({ text, label });
  }
  return {
    name,
    train: jsonl(all.slice(0, lines)),
    validation: jsonl(all.slice(lines)),
    score: 'labels',
  };
}

/** Chat messages: a system line, a question about one of `keys` items, the answer. */
function chat(name: string, keys: number, lines: number): Dataset {
  const rows = [];
  for (let k = 0; k < lines; k++) {
    const i = k % keys;
    rows.push({
      messages: [
        { role: 'system', content: 'Answer with one word.' },
        { role: 'user', content: `color of item ${i}?` },
        { role: 'assistant', content: COLORS[(i * 3 + 1) % COLORS.length]! },
      ],
    });
  }
  return { name, train: jsonl(rows), score: 'exact' };
}

const DATASETS: Dataset[] = [
  recall('recall-20', 20, 1, 'k'),
  recall('recall-128', 16, 8, 'key'),
  classification('classify-100', 100),
  chat('chat-1000', 40, 1000),
].filter((d) => !ONLY || ONLY.includes(d.name));

const root = mkdtempSync(join(tmpdir(), 'ladder-bench-defaults-'));
try {
  const ckpt: { dir: string; config: BackboneConfig } =
    BACKBONE === 'random'
      ? await writeTinyCheckpoint(join(root, 'backbone'), {
          architecture: 'llama',
          hidden: D,
          layers: LAYERS,
          heads: 4,
          kvHeads: 2,
          intermediate: Math.round((D * 11) / 4 / 8) * 8,
          seed: 7,
        })
      : { dir: PRETRAINED_BACKBONE.dir, config: await loadConfig(PRETRAINED_BACKBONE.dir) };
  const tok = await loadTokenizer(ckpt.dir);
  const maxLength = Math.min(MAX_LENGTH, ckpt.config.maxPositions);
  const buildCacheDir = join(root, 'builds');
  const session = { intraOpThreads: THREADS };
  const results = [];
  for (const ds of DATASETS) {
    const data = prepareDataset(ds.train, tok, { maxLength });
    const validation = ds.validation
      ? prepareDataset(ds.validation, tok, {
          maxLength,
          format: data.format,
          ...(data.labels ? { labels: data.labels } : {}),
        }).examples
      : undefined;
    const hp = Hyperparameters.parse(OVERRIDE);
    const plan = jobTraining(hp, data.examples.length, 0);
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const result = await trainSideNet({
      modelDir: ckpt.dir,
      buildCacheDir,
      sideNet: { preset: 'lst', overrides: { reduction_factor: hp.reduction_factor, init: hp.init } },
      train: data.examples,
      ...(validation ? { validation, evaluation: { everySteps: plan.evalEverySteps } } : {}),
      ...(data.labels ? { labels: data.labels } : {}),
      hyperparameters: { ...plan.hyperparameters, ...(GATE ? { gateLrScale: GATE } : {}) },
      session,
      taps: { kind: 'phased', dir: join(root, 'taps') },
    });
    const wall = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const accuracy = await exactAnswers(
      result,
      ds.score === 'labels' ? validation! : distinctPrompts(data.examples),
    );
    const row = {
      dataset: ds.name,
      lines: data.examples.length,
      hyperparameters: plan.resolved,
      steps: result.summary.steps,
      wall_s: Math.round(wall * 10) / 10,
      // This process's CPU seconds (user + system) while training: on a shared machine the wall
      // clock also counts other processes' turns; on an idle one at BENCH_THREADS=1 the two meet.
      cpu_s: Math.round((cpu.user + cpu.system) / 1e5) / 10,
      accuracy: Math.round(accuracy * 1000) / 1000,
      ...(result.summary.accuracy
        ? { argmin_label_accuracy: Math.round(result.summary.accuracy.accuracy * 1000) / 1000 }
        : {}),
      final_train_loss: Math.round(result.summary.finalTrainLoss * 1000) / 1000,
    };
    console.error(JSON.stringify(row));
    results.push(row);
  }

  /** Each example right when every target is the argmax given the ones before: greedy emits it exactly. */
  async function exactAnswers(result: TrainResult, examples: TrainingExample[]): Promise<number> {
    const cfg = ckpt.config;
    const evaluator = await SideEvaluator.create(
      result.shape,
      f32(await loadLmHead(ckpt.dir, cfg), [cfg.vocabSize, cfg.hiddenSize]),
      { session },
    );
    const pass = await BackbonePass.open(ckpt.dir, buildCacheDir, result.shape, {}, session);
    const shapes = new Map(sideNetParams(result.shape).map((p) => [p.name, p.shape]));
    const params = Object.fromEntries(
      Object.entries(result.params).map(([n, w]) => [n, f32(w, shapes.get(n)!)]),
    );
    let right = 0;
    for (const [i] of examples.entries()) {
      const batch = collate(examples, [i], tok.padTokenId ?? 0);
      const out = await evaluator.tokens(params, batch, await pass.run(batch));
      if (out.correct === batch.targets) right++;
    }
    await Promise.all([evaluator.dispose(), pass.dispose()]);
    return right / examples.length;
  }

  console.log(
    JSON.stringify({
      backbone: {
        name: BACKBONE,
        d: ckpt.config.hiddenSize,
        layers: ckpt.config.layers,
        vocab: ckpt.config.vocabSize,
        random: BACKBONE === 'random',
      },
      override: OVERRIDE,
      gate_lr_scale: GATE ?? 'default',
      datasets: results,
      defaults_min_accuracy: Math.min(...results.map((r) => r.accuracy)),
      defaults_max_wall_s: Math.max(...results.map((r) => r.wall_s)),
      defaults_max_cpu_s: Math.max(...results.map((r) => r.cpu_s)),
    }),
  );
} finally {
  rmSync(root, { recursive: true, force: true });
}

/** One example per distinct input (repeated lines are one question). */
function distinctPrompts(examples: readonly TrainingExample[]): TrainingExample[] {
  const seen = new Map<string, TrainingExample>();
  for (const e of examples) seen.set(e.inputIds.join(','), e);
  return [...seen.values()];
}
