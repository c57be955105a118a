// Quality on the pretrained backbone (models/ladder-base, 4-bit) and the real tasks (SpamAssassin, Brown genre, WordNet glosses): LST, xLadder, pruned LST and QLoRA, each the best of a 3-point learning-rate sweep at equal steps; held-out perplexity beside n-gram baselines.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MALLOC_ENV } from '../gpu-worker/src/runtime/memory.ts';
import { type ChildArg, METHODS, type Method, TASKS, type TaskName } from './quality.tasks.ts';

const here = dirname(fileURLToPath(import.meta.url));
const tsx = join(here, '..', 'node_modules', '.bin', 'tsx');
const MODEL_DIR = process.env.BENCH_MODEL_DIR ?? join(here, '..', 'models', 'ladder-base');
const STEPS = Number(process.env.BENCH_STEPS ?? 120);
const EVALS = Number(process.env.BENCH_EVALS ?? 6);
const THREADS = Number(process.env.BENCH_THREADS ?? 1);
/** Children at once (each single-threaded by default). */
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 2);
/**
 * The sweep: three peaks a factor ~3 apart around each method's usual rate (side nets train at
 * 1e-2 in the worker's auto rule; LoRA at 1e-4..1e-3 on large models, a small model takes more).
 */
const LRS: Record<Method, number[]> = {
  lst: [3e-3, 1e-2, 3e-2],
  xladder: [3e-3, 1e-2, 3e-2],
  lst_pruned: [3e-3, 1e-2, 3e-2],
  qlora: [3e-4, 1e-3, 3e-3],
};
const methods = listEnv('BENCH_METHODS', METHODS);
const tasks = listEnv('BENCH_TASKS', TASKS);
const CLASSIFICATION: TaskName[] = ['spam', 'genre'];

function listEnv<T extends string>(name: string, known: readonly T[]): T[] {
  const picked = (process.env[name] ?? known.join(',')).split(',').filter(Boolean);
  const unknown = picked.filter((p) => !known.includes(p as T));
  if (unknown.length) throw new Error(`${name}: unknown ${unknown.join(', ')} (known: ${known.join(', ')})`);
  return picked as T[];
}
const round = (x: number, digits = 4) => +x.toFixed(digits);
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);

type Result = Record<string, unknown> & {
  error?: string;
  curve?: [number, number, number][];
  dev?: { accuracy: number; eval_loss: number };
  test?: { accuracy: number; eval_loss: number };
  generation?: { exact_match: number; token_f1: number };
};

function child(arg: ChildArg): Promise<Result> {
  return new Promise((resolve) => {
    {
      const p = spawn(tsx, [join(here, 'quality.child.ts'), JSON.stringify(arg)], {
        env: { ...MALLOC_ENV, ...process.env },
      });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => {
        out += d;
      });
      p.stderr.on('data', (d) => {
        err += d;
      });
      p.on('close', (code) => {
        const last = out.trim().split('\n').at(-1) ?? '';
        if (code !== 0 || !last.startsWith('{'))
          resolve({ error: `exit ${code}: ${(err || out).trim().split('\n').slice(-3).join(' | ')}` });
        else resolve(JSON.parse(last));
      });
    }
  });
}

/** Runs the jobs PARALLEL at a time, in order of submission. */
async function pool<T>(jobs: (() => Promise<T>)[]): Promise<T[]> {
  const out = new Array<T>(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, PARALLEL) }, async () => {
      while (next < jobs.length) {
        const i = next++;
        out[i] = await jobs[i]!();
      }
    }),
  );
  return out;
}

/** The task's headline metric: accuracy (classification) or token F1 of greedy generation (gloss). */
const metricOf = (task: TaskName, r: Result) =>
  task === 'gloss' ? (r.generation?.token_f1 ?? Number.NaN) : (r.test?.accuracy ?? Number.NaN);
/** What the sweep picks by, on the dev lines (held out of training): accuracy, then loss. */
const devKey = (r: Result) => [
  r.dev?.accuracy ?? Number.NEGATIVE_INFINITY,
  -(r.dev?.eval_loss ?? Number.POSITIVE_INFINITY),
];

/**
 * The first evaluated update reaching 90% of the run's final gain over the backbone: accuracy
 * for classification, held-out loss for generation (its curve has no accuracy worth the name).
 */
function stepsTo90(task: TaskName, r: Result, start: { accuracy: number; eval_loss: number }): number | null {
  const curve = r.curve ?? [];
  const last = curve.at(-1);
  if (!last) return null;
  const [, finalAcc, finalLoss] = last;
  const gain =
    task === 'gloss'
      ? (c: [number, number, number]) => (start.eval_loss - c[2]) / (start.eval_loss - finalLoss)
      : (c: [number, number, number]) => (c[1] - start.accuracy) / (finalAcc - start.accuracy);
  const total = task === 'gloss' ? start.eval_loss - finalLoss : finalAcc - start.accuracy;
  if (!(total > 0)) return null; // no gain to reach 90% of
  return curve.find((c) => gain(c) >= 0.9)?.[0] ?? null;
}

if (!existsSync(join(MODEL_DIR, 'config.json'))) {
  throw new Error(`quality: no model at ${MODEL_DIR} (models/ladder-base, or BENCH_MODEL_DIR)`);
}
const root = mkdtempSync(join(tmpdir(), 'ladder-bench-quality-'));
try {
  const base = { modelDir: MODEL_DIR, cacheDir: join(root, 'builds'), threads: THREADS };
  // One build of each graph first, so parallel children find it cached.
  const ppl = await child({ ...base, mode: 'ppl', pretrainDir: join(here, '..', '.data', 'pretrain') });
  if (ppl.error) throw new Error(`ppl: ${ppl.error}`);
  console.error(`ppl: ${JSON.stringify(ppl)}`);
  const backbone = Object.fromEntries(
    await pool(
      tasks.map((task) => async () => [task, await child({ ...base, mode: 'backbone', task })] as const),
    ),
  ) as Record<TaskName, Result>;
  console.error(`backbone: ${JSON.stringify(backbone)}`);

  const runs = tasks.flatMap((task) =>
    methods.flatMap((method) => LRS[method].map((lr) => ({ task, method, lr }))),
  );
  const results = await pool(
    runs.map((r) => async () => {
      const out = await child({ ...base, mode: 'train', ...r, steps: STEPS, evals: EVALS });
      console.error(`${r.task} ${r.method} lr ${r.lr}: ${JSON.stringify({ ...out, curve: undefined })}`);
      return { ...r, out };
    }),
  );

  const perTask: Record<string, Record<string, unknown>> = {};
  const best: Partial<
    Record<TaskName, Partial<Record<Method, Result & { lr: number; steps_to_90: number | null }>>>
  > = {};
  for (const task of tasks) {
    const start = backbone[task]!.curve_start as { accuracy: number; eval_loss: number };
    const row: Record<string, unknown> = { backbone: backbone[task] };
    for (const method of methods) {
      const sweep = results.filter((r) => r.task === task && r.method === method && !r.out.error);
      const failed = results.filter((r) => r.task === task && r.method === method && r.out.error);
      if (!sweep.length) {
        row[method] = { errors: failed.map((f) => `lr ${f.lr}: ${f.out.error}`) };
        continue;
      }
      const chosen = sweep.reduce((a, b) => {
        const [ka, kb] = [devKey(a.out), devKey(b.out)];
        return kb[0]! > ka[0]! || (kb[0] === ka[0] && kb[1]! > ka[1]!) ? b : a;
      });
      const pick = { ...chosen.out, lr: chosen.lr, steps_to_90: stepsTo90(task, chosen.out, start) };
      best[task] = { ...best[task], [method]: pick };
      row[method] = {
        lr: chosen.lr,
        metric: round(metricOf(task, chosen.out)),
        test: chosen.out.test,
        generation: chosen.out.generation,
        steps_to_90: pick.steps_to_90,
        peak_mb: chosen.out.peak_mb,
        s_per_step: round(Number(chosen.out.train_step_ms) / 1000, 4),
        steps: chosen.out.steps,
        trainable_params: chosen.out.trainable_params,
        curve: chosen.out.curve,
        sweep: sweep.map((s) => ({
          lr: s.lr,
          dev: s.out.dev,
          test: s.out.test,
          generation: s.out.generation,
        })),
        ...(failed.length ? { errors: failed.map((f) => `lr ${f.lr}: ${f.out.error}`) } : {}),
      };
    }
    perTask[task] = row;
  }

  const diff = (a: Method, b: Method, over: TaskName[]) =>
    mean(
      over
        .filter((t) => best[t]?.[a] && best[t]?.[b])
        .map((t) => metricOf(t, best[t]![a]!) - metricOf(t, best[t]![b]!)),
    );
  const ratios = tasks
    .map((t) => [best[t]?.lst_pruned?.steps_to_90, best[t]?.lst?.steps_to_90] as const)
    .filter(([p, r]) => typeof p === 'number' && typeof r === 'number' && r > 0)
    .map(([p, r]) => p! / r!);
  const classification = CLASSIFICATION.filter((t) => tasks.includes(t));
  const orNull = (x: number | null) => (x === null ? null : round(x));
  console.log(
    JSON.stringify({
      bench: 'quality',
      backbone: {
        model: MODEL_DIR.split('/').slice(-2).join('/'),
        served: '4-bit (the loader)',
        threads: THREADS,
      },
      steps: STEPS,
      lr_sweep: LRS,
      definitions: {
        selection:
          'per method and task, the peak lr of the sweep with the best dev accuracy (then dev loss); dev = every 7th training line, held out of training',
        metric:
          'classification: test accuracy (argmin summed loss over the labels); gloss: token F1 of greedy generation on held-out words',
        steps_to_90:
          "first evaluated update reaching 90% of the run's final gain over the backbone, on the curve lines (the first 48 test lines, every label about equally; classification: accuracy; gloss: loss)",
        peak_mb: "peak RSS of the run's own process (training, with evaluation in 512-token batches)",
        s_per_step:
          'median wall time of one update (side nets: backbone forward + side step; QLoRA: the whole step)',
        methods:
          'LST r=8 random init; xLadder delta = layers/2; LST r=8 pruned init; QLoRA r=16 alpha=32 on every linear of every block; all AdamW wd 0.01, clip 1, warmup 5% + cosine to 0.1x, the same batches',
      },
      ...ppl,
      lst_minus_qlora_accuracy: orNull(diff('lst', 'qlora', classification)),
      xladder_minus_lst_accuracy: orNull(diff('xladder', 'lst', classification)),
      pruned_over_random_steps_to_90: ratios.length ? round(mean(ratios)!) : null,
      tasks: perTask,
    }),
  );
} finally {
  rmSync(root, { recursive: true, force: true });
}
