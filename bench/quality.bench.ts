// Quality at equal steps: LST, xLadder, LST with pruned init and QLoRA (r=16) on one generated 4-bit llama (d=256, 4 layers), key->value recall and held-out classification: steps to 90%, final eval loss, accuracy, step time.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  Backbone,
  BackboneStepper,
  type BackboneTokenizer,
  generate,
  loadConfig,
  loadTokenizer,
  openCheckpoint,
  type Stepper,
} from '../gpu-worker/src/backbone/index.ts';
import type { BackboneConfig } from '../gpu-worker/src/backbone/types.ts';
import { toModelBytes } from '../gpu-worker/src/graph/index.ts';
import { createSession, f32, i64, type Tensor, TrainRunner } from '../gpu-worker/src/runtime/index.ts';
import { BatchLoader } from '../gpu-worker/src/side-net/data/index.ts';
import {
  AdapterStepper,
  adapterTensors,
  buildQloraTrainStep,
  buildSideInferenceGraph,
  decodeCheckpoint,
  HYPERPARAMETER_DEFAULTS,
  type LrSchedule,
  learningRateAt,
  loadLmHead,
  QLORA_IO,
  resolveSideNet,
  type SideNetChoice,
  sideNetInput,
  sideNetParams,
  trainSideNet,
  warmupSteps,
} from '../gpu-worker/src/side-net/index.ts';
import { writeTinyCheckpoint } from '../test/helpers/tiny-checkpoint.ts';
import {
  classificationTask,
  evaluate,
  type Logits,
  loraEvalGraph,
  loraLogits,
  type Metrics,
  recallTask,
  SideLogits,
  type Task,
} from './quality.tasks.ts';
import { median } from './stats.ts';

const D = Number(process.env.BENCH_D ?? 256);
const LAYERS = Number(process.env.BENCH_LAYERS ?? 4);
const STEPS = Number(process.env.BENCH_STEPS ?? 240);
const EVAL_EVERY = Number(process.env.BENCH_EVAL_EVERY ?? 10);
/** One peak for every method (3e-3: all four learn; at 1e-2 QLoRA diverges); BENCH_LR_<METHOD> overrides one. */
const LR = Number(process.env.BENCH_LR ?? 3e-3);
const lrOf = (m: Method) => Number(process.env[`BENCH_LR_${m.toUpperCase()}`] ?? LR);
const THREADS = Number(process.env.BENCH_THREADS ?? 1);
const RECALL_KEYS = Number(process.env.BENCH_KEYS ?? 48);
const METHODS = listEnv('BENCH_METHODS', ['lst', 'xladder', 'lst_pruned', 'qlora'] as const);
const TASKS = listEnv('BENCH_TASKS', ['recall', 'classification'] as const);
const dims = {
  hidden: D,
  layers: LAYERS,
  heads: D / 32,
  kvHeads: D / 64,
  intermediate: (D * 11) / 4,
  vocab: 1024,
};
const LORA = { rank: 16, alpha: 32 } as const;
/** Everything but the peak rate and the update count, as trainSideNet resolves it. */
const HP = {
  warmup: { ratio: 0.05 },
  minLrRatio: 0.1,
  weightDecay: 0.01,
  maxGradNorm: 1,
  seed: Number(process.env.BENCH_SEED ?? 0),
} as const;
const session = { intraOpThreads: THREADS };

type Method = (typeof METHODS)[number];
const SIDE_NETS: Record<Exclude<Method, 'qlora'>, SideNetChoice> = {
  lst: { preset: 'lst' },
  xladder: { preset: 'xladder', delta: LAYERS / 2 },
  lst_pruned: { preset: 'lst', overrides: { init: 'pruned' } },
};

interface Run {
  /** [step, accuracy, eval loss] every EVAL_EVERY updates and at the end. */
  curve: [number, number, number][];
  trainable_params: number;
  train_step_ms: number;
  final_train_loss: number;
  /** The trainer's own SideEvaluator on the same validation set (side nets only). */
  trainer_eval_loss?: number | null;
  trainer_accuracy?: number | null;
}

/** A comma-separated choice from the environment, every unknown name refused at once. */
function listEnv<T extends string>(name: string, known: readonly T[]): T[] {
  const picked = (process.env[name] ?? known.join(',')).split(',').filter(Boolean);
  const unknown = picked.filter((p) => !known.includes(p as T));
  if (unknown.length) throw new Error(`${name}: unknown ${unknown.join(', ')} (known: ${known.join(', ')})`);
  return picked as T[];
}
const round = (x: number, digits = 4) => +x.toFixed(digits);
const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
/** How to read the results (printed with them). */
const DEFINITIONS = {
  scoring:
    "one rule for every method, over its own teacher-forced logits (side nets: the trainer's backbone pass + side forward; QLoRA: the backbone graph with a linearHook adding the LoRA)",
  eval_loss:
    'mean loss over the labelled tokens (recall: the memorised pairs; classification: gold label + eos of the held-out texts)',
  recall_accuracy:
    'exact match: every answer token and the eos is the argmax, i.e. what greedy generation emits',
  classification_accuracy: 'held-out texts: argmin summed loss over the label set',
  steps_to_90: 'first evaluated update (every eval_every) with accuracy >= 0.9; null: never',
  curve: '[update, accuracy, eval_loss]',
  generation_exact_match:
    'real greedy generation with the final weights (AdapterStepper / LoRA baked into the backbone graph)',
  train_step_ms:
    'median wall time of one update: side nets backbone forward + side step (trainSideNet), QLoRA the full step (TrainRunner)',
  backbone: 'step 0, the same for every method (Up = 0, LoRA B = 0)',
};

/** What every run needs from the one backbone. */
interface Ctx {
  modelDir: string;
  buildCacheDir: string;
  cfg: BackboneConfig;
  tok: BackboneTokenizer;
  lmHead: Tensor; // (V, d)
  padTokenId: number;
}

const root = mkdtempSync(join(tmpdir(), 'ladder-bench-quality-'));
try {
  const { dir: modelDir } = await writeTinyCheckpoint(join(root, 'backbone'), {
    architecture: 'llama',
    seed: 1,
    ...dims,
  });
  const cfg = await loadConfig(modelDir);
  const tok = await loadTokenizer(modelDir);
  const ctx: Ctx = {
    modelDir,
    buildCacheDir: join(root, 'builds'),
    cfg,
    tok,
    lmHead: f32(await loadLmHead(modelDir, cfg), [cfg.vocabSize, cfg.hiddenSize], 'lm_head'),
    padTokenId: tok.padTokenId ?? tok.eosTokenId ?? 0,
  };
  const qlora = await qloraTrainer(ctx);
  const tasks: Record<string, unknown> = {};
  try {
    for (const name of TASKS) {
      const task = name === 'recall' ? recallTask(tok, RECALL_KEYS) : classificationTask(tok);
      // Equal updates for every method: trainSideNet's loader plan, whole epochs to about STEPS.
      const loader = new BatchLoader(task.train, {
        tokenBudget: task.tokenBudget,
        padTokenId: ctx.padTokenId,
      });
      const perEpoch = loader.batchesOf(0).length;
      const epochs = Math.max(1, Math.round(STEPS / perEpoch));
      const total = perEpoch * epochs;
      const results: Record<string, unknown> = {
        steps: total,
        batches_per_epoch: perEpoch,
        backbone: summarise(await qlora.evalAtInit(task)), // step 0 of every method
      };
      for (const method of METHODS) {
        const started = performance.now();
        const schedule: LrSchedule = {
          peak: lrOf(method),
          warmupSteps: warmupSteps(HP.warmup, total),
          totalSteps: total,
          minRatio: HP.minLrRatio,
        };
        const run =
          method === 'qlora'
            ? await qlora.train(task, schedule)
            : await trainSide(method, task, { epochs, schedule }, ctx);
        const generated = await run.generate(task.prompts.map((p) => p.prompt));
        const exact = generated.filter((g, i) => g === task.prompts[i]!.want).length / generated.length;
        const out = {
          ...report(run.run),
          generation_exact_match: round(exact),
          lr_peak: schedule.peak,
          wall_s: round((performance.now() - started) / 1000, 1),
        };
        results[method] = out;
        console.error(`${name} ${method}: ${JSON.stringify(out)}`);
      }
      tasks[name] = results;
    }
  } finally {
    await qlora.dispose();
  }
  console.log(
    JSON.stringify({
      bench: 'quality',
      backbone: { architecture: 'llama', d: D, layers: LAYERS, vocab: dims.vocab, bits: 4, threads: THREADS },
      steps: STEPS,
      eval_every: EVAL_EVERY,
      lr: {
        peak: LR,
        warmup: HP.warmup,
        min_ratio: HP.minLrRatio,
        schedule: 'warmup + cosine (learningRateAt)',
      },
      definitions: DEFINITIONS,
      tasks,
    }),
  );
} finally {
  rmSync(root, { recursive: true, force: true });
}

function summarise(m: Metrics) {
  return { accuracy: round(m.accuracy), eval_loss: round(m.evalLoss) };
}

function report(run: Run) {
  const at90 = run.curve.find(([, acc]) => acc >= 0.9);
  const [, accuracy, evalLoss] = run.curve.at(-1)!;
  return {
    steps_to_90: at90 ? at90[0] : null,
    final_eval_loss: evalLoss,
    accuracy,
    final_train_loss: round(run.final_train_loss),
    train_step_ms: round(run.train_step_ms, 1),
    trainable_params: run.trainable_params,
    ...(run.trainer_eval_loss !== undefined
      ? { trainer_eval_loss: run.trainer_eval_loss, trainer_accuracy: run.trainer_accuracy }
      : {}),
    curve: run.curve,
  };
}

/** Greedy completions (text up to eos) of plain prompts through a stepper. */
async function complete<C>(
  stepper: Stepper<C>,
  tok: BackboneTokenizer,
  prompts: string[],
): Promise<string[]> {
  const out = await generate(
    stepper,
    prompts.map((p) => ({
      prompt: tok.encode(p, { addSpecialTokens: true }),
      params: { maxTokens: 8, stopTokenIds: [...tok.stopTokenIds] },
    })),
    { detokenize: (ids) => tok.decode(ids, { skipSpecialTokens: true }), padId: tok.padTokenId ?? 0 },
  );
  return out.map((r) => r.text ?? '');
}

interface Trained {
  run: Run;
  generate(prompts: string[]): Promise<string[]>;
}

/**
 * A side net through trainSideNet itself. Its checkpoint sink is where the parameters come out
 * between updates, so the sink evaluates them (every EVAL_EVERY updates, and the last).
 */
async function trainSide(
  method: Exclude<Method, 'qlora'>,
  task: Task,
  plan: { epochs: number; schedule: LrSchedule },
  ctx: Ctx,
): Promise<Trained> {
  const { schedule } = plan;
  const shape = resolveSideNet(ctx.cfg, sideNetInput(SIDE_NETS[method], ctx.cfg));
  const scorer = await SideLogits.create(ctx.modelDir, ctx.buildCacheDir, shape, ctx.lmHead, session);
  const curve: Run['curve'] = [];
  const stepMs: number[] = [];
  let last = performance.now();
  let evalMs = 0;
  try {
    const result = await trainSideNet({
      modelDir: ctx.modelDir,
      buildCacheDir: ctx.buildCacheDir,
      sideNet: SIDE_NETS[method],
      train: task.train,
      validation: task.validation,
      hyperparameters: {
        ...HP,
        learningRate: schedule.peak,
        epochs: plan.epochs,
        tokenBudget: task.tokenBudget,
      },
      session,
      checkpoint: {
        everySteps: EVAL_EVERY,
        sink: {
          loadLatest: async () => undefined,
          save: async (step, data) => {
            const t0 = performance.now();
            const { tensors } = decodeCheckpoint(data, `step ${step}`);
            const params = Object.fromEntries(
              sideNetParams(shape).map((p) => [p.name, f32(tensors[p.name]!, p.shape, p.name)]),
            );
            const m = await evaluate(
              task.scored,
              (b) => scorer.logits(params, b),
              task.tokenBudget,
              ctx.padTokenId,
            );
            curve.push([step, round(m.accuracy), round(m.evalLoss)]);
            evalMs += performance.now() - t0;
          },
        },
      },
      onProgress: (p) => {
        const now = performance.now();
        if (p.step > 1) stepMs.push(now - last - evalMs); // the first includes session warm-up
        last = now;
        evalMs = 0;
      },
    });
    if (result.summary.steps !== schedule.totalSteps)
      throw new Error(
        `${method}: trainSideNet took ${result.summary.steps} updates, not ${schedule.totalSteps}`,
      );
    const { finalEvalLoss, accuracy } = result.summary;
    return {
      run: {
        curve,
        trainable_params: sideNetParams(shape).reduce((n, p) => n + size(p.shape), 0),
        train_step_ms: median(stepMs),
        final_train_loss: result.summary.finalTrainLoss,
        trainer_eval_loss: finalEvalLoss === null ? null : round(finalEvalLoss),
        trainer_accuracy: accuracy ? round(accuracy.accuracy) : null,
      },
      async generate(prompts) {
        // Generation's backbone: the side net's taps with the KV cache (the training pass has none).
        const backbone = await Backbone.open(ctx.modelDir, {
          cacheDir: ctx.buildCacheDir,
          graph: { taps: [...shape.taps], logits: 'none' },
          session,
        });
        const side = await createSession(toModelBytes(buildSideInferenceGraph(shape)), session);
        try {
          const stepper = new AdapterStepper(
            backbone.stepper,
            side,
            shape,
            adapterTensors(shape, result.params),
            ctx.lmHead,
          );
          return await complete(stepper, ctx.tok, prompts);
        } finally {
          await Promise.all([side.dispose(), backbone.dispose(), scorer.dispose()]);
        }
      },
    };
  } catch (e) {
    await scorer.dispose();
    throw e;
  }
}

/**
 * The QLoRA baseline with trainSideNet's loader (same seed and token budget), schedule and AdamW
 * settings, driven by TrainRunner over buildQloraTrainStep; evaluated through a backbone graph
 * whose linear hook adds the LoRA update (A, B fed as inputs while training, baked in as
 * initializers for generation).
 */
async function qloraTrainer(ctx: Ctx) {
  const { cfg } = ctx;
  const source = await openCheckpoint(ctx.modelDir);
  const step = await buildQloraTrainStep(cfg, source, {
    ...LORA,
    seed: HP.seed,
    optim: { weightDecay: HP.weightDecay, maxGradNorm: HP.maxGradNorm },
  });
  const stepModel = toModelBytes(step.graph);
  const evalSession = await createSession(
    toModelBytes(await loraEvalGraph(cfg, source, LORA, 'all', 'inputs')),
    session,
  );
  const logitsWith = (params: Record<string, Tensor>): Logits => loraLogits(evalSession, cfg, params);
  const tensorsOf = (w: Record<string, Float32Array>) =>
    Object.fromEntries(step.layout.params.map((p) => [p.name, f32(w[p.name]!, p.shape, p.name)]));

  return {
    /** Step 0 of every method is the backbone itself (LoRA B = 0, side Up = 0). */
    evalAtInit: (task: Task) =>
      evaluate(task.scored, logitsWith(tensorsOf(step.init)), task.tokenBudget, ctx.padTokenId),

    async train(task: Task, schedule: LrSchedule): Promise<Trained> {
      const runner = await TrainRunner.create({ layout: step.layout, step: stepModel }, step.init, {
        session,
      });
      const loader = new BatchLoader(task.train, {
        tokenBudget: task.tokenBudget,
        maxBatchSize: HYPERPARAMETER_DEFAULTS.maxBatchSize,
        seed: HP.seed,
        shuffle: true,
        padTokenId: ctx.padTokenId,
      });
      const curve: Run['curve'] = [];
      const stepMs: number[] = [];
      const epochLoss = { epoch: -1, sum: 0, targets: 0 };
      try {
        for (let t = 1; t <= schedule.totalSteps; t++) {
          const t0 = performance.now();
          const { batch, epoch } = loader.next();
          const dims = [batch.size, batch.length];
          const { loss } = await runner.step(
            {
              [QLORA_IO.inputIds]: i64(batch.inputIds, dims),
              [QLORA_IO.labels]: i64(batch.labels, dims),
              [QLORA_IO.attentionMask]: i64(batch.attentionMask, dims),
              [QLORA_IO.positionIds]: i64(batch.positionIds, dims),
            },
            learningRateAt(t, schedule),
          );
          if (t > 1) stepMs.push(performance.now() - t0); // the first includes session warm-up
          if (epochLoss.epoch !== epoch) Object.assign(epochLoss, { epoch, sum: 0, targets: 0 });
          epochLoss.sum += loss * batch.targets;
          epochLoss.targets += batch.targets;
          if (t % EVAL_EVERY === 0 || t === schedule.totalSteps) {
            const m = await evaluate(
              task.scored,
              logitsWith(runner.paramTensors()),
              task.tokenBudget,
              ctx.padTokenId,
            );
            curve.push([t, round(m.accuracy), round(m.evalLoss)]);
          }
        }
        const weights = runner.params() as Record<string, Float32Array>;
        return {
          run: {
            curve,
            trainable_params: step.layout.params.reduce((n, p) => n + size(p.shape), 0),
            train_step_ms: median(stepMs),
            final_train_loss: epochLoss.sum / Math.max(1, epochLoss.targets),
          },
          async generate(prompts) {
            const graph = await loraEvalGraph(cfg, source, LORA, 'last', weights);
            const s = await createSession(toModelBytes(graph), session);
            try {
              return await complete(new BackboneStepper(s, cfg), ctx.tok, prompts);
            } finally {
              await s.dispose();
            }
          },
        };
      } finally {
        await runner.dispose();
      }
    },

    async dispose() {
      await evalSession.dispose();
      await source.close();
    },
  };
}
