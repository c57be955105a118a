// LST as the seed paper runs it, for `npm run bench -- memory`: per micro-batch the backbone runs as
// plain inference, then the side net's training step on what it gave, both sessions loaded
// throughout; float32 taps and no block recompute. The trainer (trainSideNet) has no switch for
// those two savers, so this drives the same pieces it uses (the backbone build it makes, with
// float32 taps; sideTrainSpec; TrainRunner; the same session settings) without them.
import { performance } from 'node:perf_hooks';
import {
  BACKBONE_IO,
  buildBackbone,
  HF_NAMES,
  loadConfig,
  openCheckpoint,
} from '../gpu-worker/src/backbone/index.ts';
import { buildTrainStep, DEFAULT_SCORE_BLOCK, toModelBytes } from '../gpu-worker/src/graph/index.ts';
import {
  collectGarbage,
  createSession,
  f32,
  i64,
  TRAINING_SESSION,
  TrainRunner,
} from '../gpu-worker/src/runtime/index.ts';
import {
  initSideNet,
  resolveSideNet,
  SIDE_IO,
  sideNetInput,
  sideTrainSpec,
} from '../gpu-worker/src/side-net/index.ts';

export interface SeedRun {
  ckpt: string;
  cache: string;
  T: number;
  B: number;
  /** Updates to time, after as many untimed ones (the trainer's bench windows: 2 x W). */
  steps: number;
  ids: number[];
  labels: number[];
  /** The savers this driver leaves off by default; on, it should match the trainer's interleaved schedule. */
  recompute?: boolean;
  tapDtype?: 'float32' | 'float16';
}

/** Wall time of each timed update (backbone pass + side step), ms. */
export async function seedLstSteps(run: SeedRun): Promise<number[]> {
  const { T, B } = run;
  const config = await loadConfig(run.ckpt);
  const shape = resolveSideNet(config, sideNetInput({ preset: 'lst' }, config));
  const tapDtype = run.tapDtype ?? 'float32';
  // The trainer's backbone build (BackbonePlan.prepare), with the taps' type as chosen.
  const build = await buildBackbone(run.ckpt, {
    cacheDir: run.cache,
    graph: {
      embeddings: 'input',
      taps: [...shape.taps],
      tapDtype,
      logits: 'none',
      fused: true,
      kvCache: false,
      scoreBlock: DEFAULT_SCORE_BLOCK,
      blocks: 'always',
    },
  });
  const names = [...shape.taps.map((t) => SIDE_IO.tap(t)), SIDE_IO.finalHidden];
  const source = await openCheckpoint(run.ckpt);
  const table = await source.read(HF_NAMES.embed); // (V, d): the rows looked up, and the tied LM head
  await source.close();
  if (!config.tieWordEmbeddings)
    throw new Error('seed LST bench: expects a tied checkpoint (LM head = table)');
  const lmHead = f32(table, [config.vocabSize, config.hiddenSize]);
  const pass = await createSession(build.modelPath, { ...TRAINING_SESSION, memoryPattern: false });
  const { graph, layout } = buildTrainStep(
    sideTrainSpec(shape, { recompute: run.recompute ?? false, tapDtype }),
  );
  const runner = await TrainRunner.create({ layout, step: toModelBytes(graph) }, initSideNet(shape, 1), {
    session: TRAINING_SESSION,
  });
  await collectGarbage();
  const d = config.hiddenSize;
  const mask = i64(new Array(B * T).fill(1), [B, T]);
  const positions = i64(
    Array.from({ length: B * T }, (_, i) => i % T),
    [B, T],
  );
  const labels = i64(run.labels, [B, T]);
  const times: number[] = [];
  const micro = async () => {
    const rows = new Float32Array(B * T * d);
    for (const [i, id] of run.ids.entries()) rows.set(table.subarray(id * d, (id + 1) * d), i * d);
    const out = await pass.run(
      {
        [BACKBONE_IO.inputsEmbeds]: f32(rows, [B, T, d]),
        [BACKBONE_IO.attentionMask]: mask,
        [BACKBONE_IO.positionIds]: positions,
      },
      names,
    );
    const feeds = { ...out, [SIDE_IO.lmHead]: lmHead, [SIDE_IO.labels]: labels };
    await runner.step({ ...feeds, [SIDE_IO.mask]: mask, [SIDE_IO.positions]: positions }, 1e-4);
  };
  for (let s = 0; s < 2 * run.steps; s++) {
    const start = performance.now();
    await micro(); // its taps die with its frame, as in the trainer's runMicro
    await collectGarbage();
    if (s >= run.steps) times.push(performance.now() - start);
  }
  await runner.dispose();
  await pass.dispose();
  return times;
}
