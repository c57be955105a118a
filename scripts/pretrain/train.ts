import { existsSync } from 'node:fs';
import { appendFile, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  buildTrainStep,
  CAUSAL_LM_BATCH,
  causalLMLoss,
  causalLMParams,
  Graph,
  initCausalLM,
  type TrainLayout,
  toModelBytes,
} from '../../gpu-worker/src/graph/index.ts';
import {
  createSession,
  type Session,
  type StateArray,
  TrainRunner,
} from '../../gpu-worker/src/runtime/index.ts';
import type { Feeds } from '../../gpu-worker/src/runtime/session.ts';
import { heldoutBatches, type TokenData, trainBatch } from './data.ts';
import { learningRate, type Recipe } from './recipe.ts';

/**
 * The pretraining loop: the engine's one-model AdamW step over the recipe's batches, a checkpoint
 * (parameters, both Adam moments, the step) every `checkpointEvery` steps written atomically, and
 * exact resume: batches depend on (seed, step) only, so a run stopped at any point and resumed
 * takes the same steps as one that never stopped.
 */

export interface Checkpoint {
  step: number;
  state: Record<string, Float32Array>;
}

const CKPT = 'checkpoint.bin';
const CKPT_META = 'checkpoint.json';

/** The state in layout order (param, m, v of each parameter) as one float32 file + a JSON index. */
async function saveCheckpoint(dir: string, layout: TrainLayout, ckpt: Checkpoint, meta: object) {
  const names = layout.params.flatMap((p) => [p.name, p.m, p.v]);
  const total = names.reduce((n, k) => n + ckpt.state[k]!.length, 0);
  const flat = new Float32Array(total);
  let at = 0;
  for (const k of names) {
    flat.set(ckpt.state[k]!, at);
    at += ckpt.state[k]!.length;
  }
  await writeFile(join(dir, `${CKPT}.tmp`), new Uint8Array(flat.buffer));
  await rename(join(dir, `${CKPT}.tmp`), join(dir, CKPT));
  await writeFile(join(dir, `${CKPT_META}.tmp`), JSON.stringify({ ...meta, step: ckpt.step, names }));
  await rename(join(dir, `${CKPT_META}.tmp`), join(dir, CKPT_META));
}

export async function loadCheckpoint(dir: string, layout: TrainLayout, tokenizerHash: string) {
  if (!existsSync(join(dir, CKPT_META))) return undefined;
  const meta = JSON.parse(await readFile(join(dir, CKPT_META), 'utf8'));
  if (meta.tokenizerHash !== tokenizerHash) {
    throw new Error(`checkpoint in ${dir} was made with another tokenizer: remove the folder to start over`);
  }
  const buf = await readFile(join(dir, CKPT));
  const flat = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const state: Record<string, Float32Array> = {};
  let at = 0;
  for (const p of layout.params) {
    const size = p.shape.reduce((a, b) => a * b, 1);
    for (const k of [p.name, p.m, p.v]) {
      state[k] = flat.slice(at, at + size);
      at += size;
    }
  }
  if (at !== flat.length) throw new Error(`checkpoint in ${dir} does not match the recipe's model`);
  return { step: meta.step as number, state };
}

/** A forward-only model: (params, batch) -> mean next-token loss, for held-out evaluation. */
async function evalSession(recipe: Recipe): Promise<Session> {
  const g = new Graph({ name: 'pretrain_eval' });
  const params = Object.fromEntries(
    causalLMParams(recipe.model).map((p) => [p.name, g.input(p.name, 'float32', p.shape)]),
  );
  const batch = Object.fromEntries(
    CAUSAL_LM_BATCH.map((b) => [b.name, g.input(b.name, b.dtype, [...b.shape])]),
  );
  g.output(
    g.scope('model', () => causalLMLoss(g, recipe.model, params, batch)),
    'loss',
  );
  return createSession(toModelBytes(g));
}

export async function heldoutLoss(
  session: Session,
  params: Feeds,
  data: TokenData,
  recipe: Recipe,
  windows?: number,
): Promise<number> {
  let sum = 0;
  let rows = 0;
  for (const batch of heldoutBatches(data, recipe, windows)) {
    const out = await session.run({ ...params, ...batch });
    const n = batch.input_ids!.dims[0]!;
    sum += (out.loss!.data as Float32Array)[0]! * n;
    rows += n;
  }
  return sum / rows;
}

export interface TrainOptions {
  dir: string;
  /** Stop after this step even if the recipe has more (to test resume). */
  stopAt?: number;
  log?: (line: Record<string, unknown>) => void;
}

export async function pretrain(recipe: Recipe, data: TokenData, opts: TrainOptions) {
  const specs = causalLMParams(recipe.model);
  const { graph, layout } = buildTrainStep({
    params: specs.map(({ name, shape }) => ({ name, shape })),
    batch: CAUSAL_LM_BATCH.map((b) => ({ ...b, shape: [...b.shape] })),
    loss: (g, params, batch) => causalLMLoss(g, recipe.model, params, batch),
    optim: { beta2: recipe.beta2, weightDecay: recipe.weightDecay, maxGradNorm: recipe.maxGradNorm },
  });
  const resumed = await loadCheckpoint(opts.dir, layout, data.tokenizerHash);
  const start = resumed?.step ?? 0;
  const initial: Record<string, StateArray> = resumed?.state ?? initCausalLM(recipe.model, recipe.seed);
  const runner = await TrainRunner.create({ layout, step: toModelBytes(graph) }, initial, {
    startStep: start,
  });
  const evaluator = await evalSession(recipe);
  const meta = { tokenizerHash: data.tokenizerHash, recipe };
  const logFile = join(opts.dir, 'log.jsonl');
  const log = async (line: Record<string, unknown>) => {
    await appendFile(logFile, `${JSON.stringify(line)}\n`);
    opts.log?.(line);
  };
  await log({ event: resumed ? 'resume' : 'start', step: start, at: new Date().toISOString() });
  const end = Math.min(recipe.steps, opts.stopAt ?? recipe.steps);
  let t0 = performance.now();
  let losses: number[] = [];
  for (let step = start; step < end; step++) {
    const lr = learningRate(recipe, step);
    const { loss, gradNorm } = await runner.step(trainBatch(data, recipe, step), lr);
    if (!Number.isFinite(loss)) throw new Error(`pretrain: loss ${loss} at step ${step + 1}`);
    losses.push(loss);
    const done = step + 1;
    if (done % 10 === 0 || done === end) {
      const s = (performance.now() - t0) / 1000;
      await log({
        step: done,
        loss: +(losses.reduce((a, b) => a + b, 0) / losses.length).toFixed(4),
        grad_norm: +gradNorm.toFixed(3),
        lr: +lr.toExponential(3),
        tokens_per_s: Math.round((losses.length * recipe.batch * recipe.seq) / s),
      });
      losses = [];
      t0 = performance.now();
    }
    if (done % recipe.evalEvery === 0 && done < recipe.steps) {
      const valid = await heldoutLoss(evaluator, runner.paramTensors(), data, recipe, recipe.evalWindows);
      await log({ step: done, heldout_loss: +valid.toFixed(4), heldout_ppl: +Math.exp(valid).toFixed(2) });
      t0 = performance.now();
    }
    if (done % recipe.checkpointEvery === 0 || done === end) {
      await saveCheckpoint(opts.dir, layout, { step: done, state: stateOf(runner) }, meta);
    }
  }
  const params = runner.params() as Record<string, Float32Array>;
  const finished = runner.stepCount >= recipe.steps;
  const final = finished ? await heldoutLoss(evaluator, runner.paramTensors(), data, recipe) : undefined;
  if (final !== undefined) {
    await log({
      step: runner.stepCount,
      final_heldout_loss: +final.toFixed(4),
      final_heldout_ppl: Math.exp(final),
    });
  }
  await runner.dispose();
  await evaluator.dispose();
  return { step: runner.stepCount, finished, params, heldoutLoss: final };
}

function stateOf(runner: TrainRunner): Record<string, Float32Array> {
  return runner.optimizerState() as Record<string, Float32Array>;
}
