// One run of `npm run bench -- quality` in its own process (so its peak RSS is its own): a method
// trained on a task at one peak learning rate, or the backbone's own scores ('backbone'), or the
// held-out perplexity of the backbone as the loader quantises it ('ppl').
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Tokenizer } from '@huggingface/tokenizers';
import {
  BACKBONE_IO,
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
import { createSession, f32, i64, type Tensor, TrainRunner, zeros } from '../gpu-worker/src/runtime/index.ts';
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
import { corpusDocs } from '../scripts/pretrain/corpus.ts';
import { encodeDocs } from '../scripts/pretrain/data.ts';
import { baselines } from '../scripts/pretrain/ngram.ts';
import {
  type ChildArg,
  type EvalSet,
  evaluate,
  type Logits,
  loraEvalGraph,
  loraLogits,
  type Method,
  realTask,
  SideLogits,
  type Task,
  tokenF1,
} from './quality.tasks.ts';
import { median } from './stats.ts';

const LORA = { rank: 16, alpha: 32 } as const;
/** Evaluation batches stay small, so the process's peak is training's, not scoring's. */
const EVAL_BUDGET = 512;
const round = (x: number, digits = 4) => +x.toFixed(digits);
const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

const arg = JSON.parse(process.argv[2]!) as ChildArg;
const session = { intraOpThreads: arg.threads };
const started = performance.now();
const cfg = await loadConfig(arg.modelDir);
const tok = await loadTokenizer(arg.modelDir);
const padTokenId = tok.padTokenId ?? tok.eosTokenId ?? 0;
const lmHead = f32(await loadLmHead(arg.modelDir, cfg), [cfg.vocabSize, cfg.hiddenSize], 'lm_head');

async function scores(set: EvalSet, logits: Logits) {
  const m = await evaluate(set, logits, EVAL_BUDGET, padTokenId);
  return { accuracy: round(m.accuracy), eval_loss: round(m.evalLoss) };
}

async function generationScores(task: Task, got: string[] | null) {
  if (!got) return null;
  const exact = got.filter((g, i) => g.trim() === task.prompts[i]!.want.trim()).length / got.length;
  const f1 = got.reduce((s, g, i) => s + tokenF1(g, task.prompts[i]!.want), 0) / got.length;
  return { exact_match: round(exact), token_f1: round(f1) };
}

/** Greedy completions (text up to eos) of plain prompts through a stepper. */
async function complete<C>(stepper: Stepper<C>, t: BackboneTokenizer, task: Task): Promise<string[] | null> {
  if (task.kind !== 'generation') return null; // classification is scored by its labels' loss
  const maxTokens = task.kind === 'generation' ? 24 : 4;
  const results: string[] = [];
  for (let i = 0; i < task.prompts.length; i += 16) {
    const chunk = task.prompts.slice(i, i + 16);
    const done = await generate(
      stepper,
      chunk.map((p) => ({
        prompt: t.encode(p.prompt, { addSpecialTokens: true }),
        params: { maxTokens, stopTokenIds: [...t.stopTokenIds] },
      })),
      { detokenize: (ids) => t.decode(ids, { skipSpecialTokens: true }), padId: t.padTokenId ?? 0 },
    );
    results.push(...done.map((r) => r.text ?? ''));
  }
  return results;
}

async function trainRun(task: Task, method: Method) {
  // Equal updates for every method: trainSideNet's loader plan (one micro-batch per update),
  // whole epochs to about `steps`.
  const loader = new BatchLoader(task.train, { tokenBudget: task.tokenBudget, padTokenId });
  const perEpoch = loader.batchesOf(0).length;
  const epochs = Math.max(1, Math.round(arg.steps! / perEpoch));
  const total = perEpoch * epochs;
  const every = Math.max(1, Math.round(total / arg.evals!));
  const schedule: LrSchedule = {
    peak: arg.lr!,
    warmupSteps: warmupSteps({ ratio: 0.05 }, total),
    totalSteps: total,
    minRatio: 0.1,
  };
  const run =
    method === 'qlora'
      ? await trainQlora(task, schedule, every)
      : await trainSide(task, method, epochs, schedule, every);
  return {
    steps: total,
    epochs,
    eval_every: every,
    ...run,
  };
}

const SIDE_NETS = (layers: number): Record<Exclude<Method, 'qlora'>, SideNetChoice> => ({
  lst: { preset: 'lst' },
  xladder: { preset: 'xladder', delta: Math.max(1, layers / 2) },
  lst_pruned: { preset: 'lst', overrides: { init: 'pruned' } },
});

/**
 * A side net through trainSideNet itself. Its checkpoint sink is where the parameters come out
 * between updates, so the sink evaluates them (every `every` updates, and the last).
 */
async function trainSide(
  task: Task,
  method: Exclude<Method, 'qlora'>,
  epochs: number,
  schedule: LrSchedule,
  every: number,
) {
  const choice = SIDE_NETS(cfg.layers)[method];
  const shape = resolveSideNet(cfg, sideNetInput(choice, cfg));
  const scorer = await SideLogits.create(arg.modelDir, arg.cacheDir, shape, lmHead, session);
  const curve: [number, number, number][] = [];
  const stepMs: number[] = [];
  let last = performance.now();
  let evalMs = 0;
  const tensorsOf = (w: Record<string, Float32Array>) =>
    Object.fromEntries(sideNetParams(shape).map((p) => [p.name, f32(w[p.name]!, p.shape, p.name)]));
  try {
    const result = await trainSideNet({
      modelDir: arg.modelDir,
      buildCacheDir: arg.cacheDir,
      sideNet: choice,
      train: task.train,
      validation: task.validation,
      hyperparameters: {
        warmup: { ratio: 0.05 },
        minLrRatio: 0.1,
        weightDecay: 0.01,
        maxGradNorm: 1,
        seed: arg.seed ?? 0,
        learningRate: schedule.peak,
        epochs,
        tokenBudget: task.tokenBudget,
      },
      session,
      checkpoint: {
        everySteps: every,
        sink: {
          loadLatest: async () => undefined,
          save: async (step, data) => {
            const t0 = performance.now();
            const { tensors } = decodeCheckpoint(data, `step ${step}`);
            const m = await scores(task.curve, (b) => scorer.logits(tensorsOf(tensors), b));
            curve.push([step, m.accuracy, m.eval_loss]);
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
    const params = tensorsOf(result.params);
    const dev = await scores(task.dev, (b) => scorer.logits(params, b));
    const test = await scores(task.scored, (b) => scorer.logits(params, b));
    // Generation's backbone: the side net's taps with the KV cache (the training pass has none).
    const backbone = await Backbone.open(arg.modelDir, {
      cacheDir: arg.cacheDir,
      graph: { taps: [...shape.taps], logits: 'none' },
      session,
    });
    const side = await createSession(toModelBytes(buildSideInferenceGraph(shape)), session);
    let generated: string[] | null;
    try {
      const stepper = new AdapterStepper(
        backbone.stepper,
        side,
        shape,
        adapterTensors(shape, result.params),
        lmHead,
      );
      generated = await complete(stepper, tok, task);
    } finally {
      await Promise.all([side.dispose(), backbone.dispose()]);
    }
    return {
      curve,
      dev,
      test,
      generation: await generationScores(task, generated),
      train_step_ms: round(median(stepMs), 1),
      final_train_loss: round(result.summary.finalTrainLoss),
      trainable_params: sideNetParams(shape).reduce((n, p) => n + size(p.shape), 0),
      samples: generated?.slice(0, 3),
    };
  } finally {
    await scorer.dispose();
  }
}

/**
 * The QLoRA baseline (r 16, alpha 32, every linear of every block) with trainSideNet's loader
 * (same seed and token budget), schedule and AdamW settings, driven by TrainRunner over
 * buildQloraTrainStep; scored through a backbone graph whose linear hook adds the LoRA update.
 */
async function qloraTrainer(task: Task) {
  const source = await openCheckpoint(arg.modelDir);
  const step = await buildQloraTrainStep(cfg as BackboneConfig, source, {
    ...LORA,
    seed: arg.seed ?? 0,
    optim: { weightDecay: 0.01, maxGradNorm: 1 },
  });
  const evalSession = await createSession(
    toModelBytes(await loraEvalGraph(cfg, source, LORA, 'all', 'inputs')),
    session,
  );
  const tensorsOf = (w: Record<string, Float32Array>) =>
    Object.fromEntries(step.layout.params.map((p) => [p.name, f32(w[p.name]!, p.shape, p.name)]));
  return {
    step,
    init: step.init,
    logitsAt: (w: Record<string, Float32Array>): Logits => loraLogits(evalSession, cfg, tensorsOf(w)),
    async generate(w: Record<string, Float32Array>, t: Task) {
      const s = await createSession(toModelBytes(await loraEvalGraph(cfg, source, LORA, 'last', w)), session);
      try {
        return await complete(new BackboneStepper(s, cfg), tok, t);
      } finally {
        await s.dispose();
      }
    },
    async dispose() {
      await evalSession.dispose();
      await source.close();
    },
    tensorsOf,
  };
}

async function trainQlora(task: Task, schedule: LrSchedule, every: number) {
  const qlora = await qloraTrainer(task);
  const runner = await TrainRunner.create(
    { layout: qlora.step.layout, step: toModelBytes(qlora.step.graph) },
    qlora.init,
    {
      session,
    },
  );
  const loader = new BatchLoader(task.train, {
    tokenBudget: task.tokenBudget,
    maxBatchSize: HYPERPARAMETER_DEFAULTS.maxBatchSize,
    seed: arg.seed ?? 0,
    shuffle: true,
    padTokenId,
  });
  const curve: [number, number, number][] = [];
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
      if (t % every === 0 || t === schedule.totalSteps) {
        const m = await scores(task.curve, qlora.logitsAt(runner.params() as Record<string, Float32Array>));
        curve.push([t, m.accuracy, m.eval_loss]);
      }
    }
    const weights = runner.params() as Record<string, Float32Array>;
    return {
      curve,
      dev: await scores(task.dev, qlora.logitsAt(weights)),
      test: await scores(task.scored, qlora.logitsAt(weights)),
      generation: await generationScores(task, await qlora.generate(weights, task)),
      train_step_ms: round(median(stepMs), 1),
      final_train_loss: round(epochLoss.sum / Math.max(1, epochLoss.targets)),
      trainable_params: qlora.step.layout.params.reduce((n, p) => n + size(p.shape), 0),
    };
  } finally {
    await runner.dispose();
    await qlora.dispose();
  }
}

/**
 * Held-out Brown perplexity (the pretraining recipe's perplexity split) of the backbone as the
 * loader serves it (4-bit), over consecutive windows of the model's context, beside the add-one
 * unigram and Kneser-Ney bigram of the same tokens (scripts/pretrain/ngram.ts).
 */
async function perplexities() {
  const streams = encodedStreams();
  const backbone = await Backbone.open(arg.modelDir, {
    cacheDir: arg.cacheDir,
    graph: { taps: [], logits: 'all' },
    session,
  });
  const T = Math.min(512, cfg.maxPositions);
  const B = 4;
  let nll = 0;
  let count = 0;
  try {
    const windows = Math.floor((streams.heldout.length - 1) / T);
    for (let w0 = 0; w0 < windows; w0 += B) {
      const rows = Math.min(B, windows - w0);
      const ids = new Array<number>(rows * T);
      for (let r = 0; r < rows; r++)
        for (let t = 0; t < T; t++) ids[r * T + t] = streams.heldout[(w0 + r) * T + t]!;
      const feeds: Record<string, Tensor> = {
        [BACKBONE_IO.inputIds]: i64(ids, [rows, T]),
        [BACKBONE_IO.attentionMask]: i64(new Array(rows * T).fill(1), [rows, T]),
        [BACKBONE_IO.positionIds]: i64(
          Array.from({ length: rows * T }, (_, i) => i % T),
          [rows, T],
        ),
      };
      for (let l = 0; l < cfg.layers; l++) {
        feeds[BACKBONE_IO.pastKey(l)] = zeros('float32', [rows, cfg.kvHeads, 0, cfg.headDim]);
        feeds[BACKBONE_IO.pastValue(l)] = zeros('float32', [rows, cfg.kvHeads, 0, cfg.headDim]);
      }
      const logits = (await backbone.stepper.session.run(feeds))[BACKBONE_IO.logits]!.data as Float32Array;
      const V = cfg.vocabSize;
      for (let r = 0; r < rows; r++)
        for (let t = 0; t < T; t++) {
          const row = logits.subarray((r * T + t) * V, (r * T + t + 1) * V);
          const target = streams.heldout[(w0 + r) * T + t + 1]!;
          let max = Number.NEGATIVE_INFINITY;
          for (let v = 0; v < V; v++) if (row[v]! > max) max = row[v]!;
          let sum = 0;
          for (let v = 0; v < V; v++) sum += Math.exp(row[v]! - max);
          nll += max + Math.log(sum) - row[target]!;
          count++;
        }
    }
  } finally {
    await backbone.dispose();
  }
  const grams = baselines(streams, cfg.vocabSize);
  return {
    backbone_ppl: round(Math.exp(nll / count), 2),
    unigram_ppl: round(grams.unigram_ppl, 2),
    bigram_ppl: round(grams.bigram_ppl, 2),
    heldout_tokens: count,
    window: T,
  };
}

/** The pretraining streams in the model's own tokens: the recipe's cache when it matches, else encoded here. */
function encodedStreams(): { brown: Uint16Array; wordnet: Uint16Array; heldout: Uint16Array } {
  const tokenizerText = readFileSync(join(arg.modelDir, 'tokenizer.json'), 'utf8');
  const dir = arg.pretrainDir;
  const u16 = (f: string) => {
    const b = readFileSync(join(dir!, f));
    return new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
  };
  if (
    dir &&
    existsSync(join(dir, 'heldout.u16')) &&
    readFileSync(join(dir, 'tokenizer.json'), 'utf8') === tokenizerText
  )
    return { brown: u16('brown.u16'), wordnet: u16('wordnet.u16'), heldout: u16('heldout.u16') };
  const t = new Tokenizer(JSON.parse(tokenizerText), {} as never);
  const eot = t.token_to_id('<|endoftext|>')!;
  const docs = corpusDocs();
  const train = docs.filter((d) => d.split === 'train');
  return {
    brown: encodeDocs(
      t,
      train.filter((d) => d.source === 'brown'),
      eot,
    ),
    wordnet: encodeDocs(
      t,
      train.filter((d) => d.source === 'wordnet'),
      eot,
    ),
    heldout: encodeDocs(
      t,
      docs.filter((d) => d.split === 'heldout'),
      eot,
    ),
  };
}

// The run itself, after every declaration above.
let out: Record<string, unknown>;
if (arg.mode === 'ppl') out = await perplexities();
else {
  const task = realTask(arg.task!, tok);
  if (arg.mode === 'backbone') {
    const qlora = await qloraTrainer(task);
    try {
      const logits = qlora.logitsAt(qlora.init);
      out = {
        dev: await scores(task.dev, logits),
        curve_start: await scores(task.curve, logits),
        test: await scores(task.scored, logits),
        generation: await generationScores(task, await qlora.generate(qlora.init, task)),
      };
    } finally {
      await qlora.dispose();
    }
  } else out = await trainRun(task, arg.method!);
}
console.log(
  JSON.stringify({
    ...out,
    peak_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    wall_s: round((performance.now() - started) / 1000, 1),
  }),
);
