// Time to first token with the worker idle and with a training job running on the same worker:
// the same backbone, the same compute gate, the trainer wired to it as the JobRunner wires it.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Lease } from '../adapters/index.ts';
import { jobTraining } from '../gpu-worker/src/jobs/training.ts';
import {
  type ComputeGate,
  type ReadyAdapter,
  Scheduler,
  type ServingModel,
  TrainingTurns,
  workerMetrics,
} from '../gpu-worker/src/serving/index.ts';
import { prepareDataset } from '../gpu-worker/src/side-net/data/index.ts';
import { TrainingAbortedError, trainSideNet } from '../gpu-worker/src/side-net/trainer/index.ts';
import { Rng } from '../gpu-worker/src/util/rng.ts';
import { Hyperparameters } from '../schemas/index.ts';

export interface TtftOptions {
  model: ServingModel;
  gate: ComputeGate;
  modelDir: string;
  workDir: string;
  /** Requests probed per condition, one at a time with a random gap. */
  probes: number;
  /** The adapter of probe i (the scheduler releases it when the request ends). */
  adapter: (i: number) => Promise<Lease<ReadyAdapter>>;
}

/** A training set of chat-like lines long enough that a step takes a while. */
function trainingText(lines: number): string {
  const rows = [];
  for (let i = 0; i < lines; i++)
    rows.push({
      prompt: `Summarise note ${i}: the cat sat on the mat while the dog ran in the park and`,
      completion: ` note ${i} says the cat and the dog were out, ${'and then more '.repeat(8)}`,
    });
  return rows.map((r) => JSON.stringify(r)).join('\n');
}

/** p99 of the probes' time to first token in ms (the scheduler's own histogram). */
async function probe(o: TtftOptions, label: string): Promise<{ p99: number; p50: number }> {
  const metrics = workerMetrics();
  const scheduler = new Scheduler(o.model, o.gate, metrics, {
    maxBatch: 8,
    maxBatchTokens: 1 << 16,
    maxQueue: 100,
    maxQueuePerTenant: 100,
    batchWaitMs: 0,
    prefixCacheBytes: 0, // every probe prefills
  });
  const rng = new Rng(17);
  try {
    for (let i = 0; i < o.probes; i++) {
      await new Promise((r) => setTimeout(r, 10 + rng.int(40)));
      await scheduler.submit({
        requestId: `${label}${i}`,
        tenant: `tenant-${i % 4}`,
        prompt: o.model.tokenizer.encode(`Probe ${i}: the cat is on the mat and the dog`),
        params: { maxTokens: 2, temperature: 0, topP: 1, topK: 0, stop: [], stopTokenIds: [] },
        seed: 0,
        adapter: await o.adapter(i),
      });
    }
  } finally {
    await scheduler.close();
  }
  return { p99: metrics.ttft.quantile(0.99) * 1000, p50: metrics.ttft.quantile(0.5) * 1000 };
}

/**
 * A training job runs from start to `stop`, gated like the worker's: `yieldPoints` on, a turn is
 * given up to waiting requests before every unit of training work; off, only between optimizer
 * steps (how the worker gated training before).
 */
async function whileTraining<T>(
  o: TtftOptions,
  yieldPoints: boolean,
  run: () => Promise<T>,
): Promise<{ result: T; steps: number; stepMs: number; yielded: number }> {
  const tok = o.model.tokenizer;
  const data = prepareDataset(trainingText(64), tok, { maxLength: 1024 });
  const plan = jobTraining(Hyperparameters.parse({ n_epochs: 50, batch_size: 8 }), data.examples.length, 0);
  const turns = new TrainingTurns(o.gate);
  const stop = new AbortController();
  let steps = 0;
  let firstStepAt = 0;
  let started!: () => void;
  const running = new Promise<void>((r) => {
    started = r;
  });
  const training = trainSideNet({
    modelDir: o.modelDir,
    buildCacheDir: join(o.workDir, 'builds'),
    sideNet: { preset: 'lst', overrides: { reduction_factor: 8 } },
    train: data.examples,
    hyperparameters: plan.hyperparameters,
    taps: { kind: 'phased', dir: join(o.workDir, 'taps') },
    signal: stop.signal,
    ...(yieldPoints ? { yieldPoint: turns.yieldPoint } : {}),
    onProgress: async () => {
      steps++;
      if (steps === 1) {
        firstStepAt = performance.now();
        started();
      }
      await turns.betweenSteps();
    },
  })
    .catch((e) => {
      if (!(e instanceof TrainingAbortedError)) throw e;
    })
    .finally(() => turns.end());
  await Promise.race([running, training]);
  const result = await run();
  const span = performance.now() - firstStepAt;
  const doneSteps = steps - 1;
  stop.abort('bench');
  await training;
  return { result, steps: doneSteps, stepMs: span / Math.max(1, doneSteps), yielded: turns.yielded };
}

export async function measureTtft(o: TtftOptions) {
  await probe(o, 'warm');
  const idle = await probe(o, 'idle');
  const perStep = await whileTraining(o, false, () => probe(o, 'step'));
  const yielding = await whileTraining(o, true, () => probe(o, 'train'));
  return {
    ttft_p99_ms_idle: Number(idle.p99.toFixed(1)),
    ttft_p99_ms_while_training: Number(yielding.result.p99.toFixed(1)),
    ttft_p50_ms_while_training: Number(yielding.result.p50.toFixed(1)),
    /** The same probes with training gated only between optimizer steps (the worker before). */
    ttft_p99_ms_while_training_gated_per_step: Number(perStep.result.p99.toFixed(1)),
    training_step_ms_while_probed: Number(yielding.stepMs.toFixed(1)),
    training_turns_yielded: yielding.yielded,
  };
}
