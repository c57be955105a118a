// Peak memory and step time of LST, xLadder and QLoRA (and the backbone's inference pass alone) on one generated 4-bit backbone (d=1024, 16 layers, V=32000) at T = 256/1024/2048, batch 1 and 4, each in its own process.
// Four-way at each T: QLoRA without and with per-block gradient checkpointing, LST as the seed runs
// it (no savers) and LST with every saver (the trainer's defaults), so each ratio compares like
// with like. Batch 4 runs at BENCH_B4_T only (default 2048), LST with every saver and plain QLoRA
// only (BENCH_B4_METHODS widens it), QLoRA for one step without a warm-up: the existing b4 ratio
// needs no more, and all four at B=4 took 28 of a 48-minute run on this 2-core machine.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MALLOC_ENV } from '../gpu-worker/src/runtime/memory.ts';
import { writeTinyCheckpoint } from '../test/helpers/tiny-checkpoint.ts';

const here = dirname(fileURLToPath(import.meta.url));
const tsx = join(here, '..', 'node_modules', '.bin', 'tsx');
const D = Number(process.env.BENCH_D ?? 1024);
const LAYERS = Number(process.env.BENCH_LAYERS ?? 16);
const SEQS = (process.env.BENCH_T ?? '256,1024,2048').split(',').map(Number);
const BATCHES = (process.env.BENCH_B ?? '1,4').split(',').map(Number);
const STEPS = Number(process.env.BENCH_STEPS ?? 1);
const B4_SEQS = (process.env.BENCH_B4_T ?? '2048').split(',').map(Number);
const ALL_METHODS = ['inference', 'qlora', 'qlora-ckpt', 'lst-seed', 'lst', 'xladder'] as const;
/** BENCH_METHODS picks some (for a quick look; the summary keys need them all). */
const METHODS = ALL_METHODS.filter((m) =>
  (process.env.BENCH_METHODS ?? ALL_METHODS.join(',')).split(',').includes(m),
);
/** The activation cache's epochs are timed at this T, batch 1 (BENCH_CACHE_T=0 skips them). */
const CACHE_T = Number(process.env.BENCH_CACHE_T ?? 256);
/** What each method had on (memory.child.ts runs them). */
const SAVERS: Record<(typeof ALL_METHODS)[number], string> = {
  inference: 'none needed: forward only, last-position logits, no taps (as a server runs the backbone)',
  qlora: 'none',
  'qlora-ckpt': 'per-block gradient checkpointing (each block recomputed in the backward)',
  'lst-seed': 'none: no block recompute, float32 taps, backbone pass and side step interleaved (both loaded)',
  lst:
    process.env.BENCH_SCHEDULE === 'interleaved'
      ? 'block recompute, float16 taps (interleaved: taps not parked)'
      : 'block recompute, float16 taps, taps parked on disk between phases (backbone closed while side steps run)',
  xladder: 'as lst',
};
const B4_METHODS = (process.env.BENCH_B4_METHODS ?? 'qlora,lst').split(',');
const methodsAt = (T: number, B: number): readonly (typeof ALL_METHODS)[number][] =>
  B === 1 ? METHODS : B4_SEQS.includes(T) ? METHODS.filter((m) => B4_METHODS.includes(m)) : [];
const key = (m: string) => m.replace('-', '_'); // qlora-ckpt -> qlora_ckpt_peak_mb

function child(arg: object): Record<string, number | string> {
  const run = spawnSync(tsx, [join(here, 'memory.child.ts'), JSON.stringify(arg)], {
    env: { ...MALLOC_ENV, ...process.env }, // as the worker runs
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
  });
  const last = run.stdout.trim().split('\n').at(-1) ?? '';
  if (run.status !== 0 || !last.startsWith('{')) {
    return {
      error: `exit ${run.status}: ${(run.stderr || run.stdout).trim().split('\n').slice(-3).join(' | ')}`,
    };
  }
  return JSON.parse(last);
}

const root = mkdtempSync(join(tmpdir(), 'ladder-bench-memory-'));
try {
  const ckpt = join(root, 'ckpt');
  const cache = join(root, 'cache');
  mkdirSync(cache, { recursive: true });
  await writeTinyCheckpoint(ckpt, {
    architecture: 'llama',
    vocab: 32000,
    hidden: D,
    layers: LAYERS,
    heads: D / 64,
    kvHeads: D / 64,
    intermediate: Math.round((8 * D) / 3 / 64) * 64,
    tie: true,
    dtype: 'BF16',
    seed: 1,
  });
  const built = child({ method: 'build-qlora', T: 1, B: 1, ckpt, cache, steps: 0 });
  if ('error' in built) throw new Error(`building the QLoRA step failed: ${built.error}`);
  if (METHODS.includes('inference')) {
    const b = child({ method: 'build-inference', T: 1, B: 1, ckpt, cache, steps: 0 });
    if ('error' in b) throw new Error(`building the inference backbone failed: ${b.error}`);
  }

  const results: Record<string, Record<string, number | string>> = {};
  for (const T of SEQS) {
    for (const B of BATCHES) {
      const methods = methodsAt(T, B);
      if (!methods.length) continue;
      const row: Record<string, number | string> = {};
      for (const method of methods) {
        const r = child({ method, T, B, ckpt, cache, steps: STEPS, warmup: B === 1 });
        if ('error' in r) row[`${key(method)}_error`] = r.error!;
        else {
          row[`${key(method)}_peak_mb`] = r.peak_mb!;
          row[`${key(method)}_step_ms`] = r.step_ms!;
        }
        console.error(`T=${T} B=${B} ${method}: ${JSON.stringify(r)}`);
      }
      results[`t${T}_b${B}`] = row;
    }
  }
  // Epochs 2..n with the activation cache (read back, no backbone) against without (the backbone
  // runs every epoch): LST through the trainer, 3 epochs of 2W examples at T = CACHE_T.
  const epochs: Record<string, Record<string, unknown>> = {};
  if (CACHE_T > 0) {
    for (const activationCache of [false, true]) {
      const r = child({ method: 'lst-epochs', T: CACHE_T, B: 1, ckpt, cache, steps: STEPS, activationCache });
      epochs[activationCache ? 'with_cache' : 'without_cache'] = r;
      console.error(`T=${CACHE_T} B=1 lst-epochs cache=${activationCache}: ${JSON.stringify(r)}`);
    }
  }
  const laterEpochsMs = (r?: Record<string, unknown>) => {
    const ms = r?.epoch_ms as number[] | undefined;
    return ms && ms.length > 1 ? ms.slice(1).reduce((a, b) => a + b, 0) / (ms.length - 1) : undefined;
  };
  const num = (k: string, m: string) => results[k]?.[m] as number | undefined;
  const ratio = (a?: number, b?: number) =>
    a !== undefined && b !== undefined ? +(a / b).toFixed(3) : undefined;
  // MB per 1k tokens of sequence: the slope between the shortest and longest T at batch 1.
  const slope = (m: string) => {
    const [lo, hi] = [Math.min(...SEQS), Math.max(...SEQS)];
    const a = num(`t${lo}_b1`, `${m}_peak_mb`);
    const b = num(`t${hi}_b1`, `${m}_peak_mb`);
    return a !== undefined && b !== undefined && hi > lo
      ? Math.round(((b - a) / (hi - lo)) * 1000)
      : undefined;
  };
  // The four-way table at the longest T (batch 1, and batch 4 where it ran), for the log and the JSON.
  const fourWay = (at: string) => {
    const row = results[at];
    if (!row) return undefined;
    const side = (m: (typeof ALL_METHODS)[number]) => ({
      peak_mb: row[`${key(m)}_peak_mb`],
      step_ms: row[`${key(m)}_step_ms`],
      savers: SAVERS[m],
    });
    return {
      qlora: side('qlora'),
      qlora_ckpt: side('qlora-ckpt'),
      lst_seed: side('lst-seed'),
      lst: side('lst'),
    };
  };
  const longest = Math.max(...SEQS);
  for (const B of BATCHES) {
    const table = fourWay(`t${longest}_b${B}`);
    if (!table) continue;
    console.error(`\nT=${longest} B=${B}           peak MB   step ms   savers`);
    for (const [name, r] of Object.entries(table).filter(([, r]) => r.peak_mb !== undefined))
      console.error(
        `${name.padEnd(12)} ${String(r.peak_mb).padStart(9)} ${String(r.step_ms).padStart(9)}   ${r.savers}`,
      );
  }
  const peak = (at: string, a: string, b: string) => ratio(num(at, `${a}_peak_mb`), num(at, `${b}_peak_mb`));
  const step = (at: string, a: string, b: string) => ratio(num(at, `${a}_step_ms`), num(at, `${b}_step_ms`));
  console.log(
    JSON.stringify({
      bench: 'memory',
      backbone: { d: D, layers: LAYERS, vocab: 32000, bits: 4 },
      steps_measured: STEPS,
      // LST and xLadder run through the trainer (trainSideNet): two windows of W micro-batches,
      // the second timed with its backbone load; seed LST 2W updates, the last W timed; QLoRA (with
      // or without checkpointing) its step STEPS times, after a warm-up step at batch 1.
      side_nets: {
        taps: process.env.BENCH_SCHEDULE === 'interleaved' ? 'interleaved' : 'phased',
        window: Math.max(2, STEPS),
      },
      batch4: { seqs: B4_SEQS, methods: B4_METHODS, qlora_steps: 'timed from the first, no warm-up step' },
      configs: results,
      peak_ratio_lst_over_qlora_t2048: ratio(
        num('t2048_b1', 'lst_peak_mb'),
        num('t2048_b1', 'qlora_peak_mb'),
      ),
      peak_ratio_lst_over_qlora_t2048_b4: ratio(
        num('t2048_b4', 'lst_peak_mb'),
        num('t2048_b4', 'qlora_peak_mb'),
      ),
      step_ratio_lst_over_qlora_t2048: ratio(
        num('t2048_b1', 'lst_step_ms'),
        num('t2048_b1', 'qlora_step_ms'),
      ),
      peak_ratio_xladder_over_qlora_t2048: ratio(
        num('t2048_b1', 'xladder_peak_mb'),
        num('t2048_b1', 'qlora_peak_mb'),
      ),
      // Four-way at T=2048: like with like. Step times are wall times on a shared 2-core machine
      // (other processes change them; peaks are per child process and do not move with them).
      four_way_t2048: fourWay('t2048_b1'),
      four_way_t2048_b4: fourWay('t2048_b4'),
      paper_condition_peak_ratio_t2048: peak('t2048_b1', 'lst_seed', 'qlora'),
      best_vs_best_peak_ratio_t2048: peak('t2048_b1', 'lst', 'qlora_ckpt'),
      best_vs_best_peak_ratio_t2048_b4: peak('t2048_b4', 'lst', 'qlora_ckpt'),
      paper_condition_peak_ratio_t2048_b4: peak('t2048_b4', 'lst_seed', 'qlora'),
      qlora_ckpt_over_qlora_peak_t2048: peak('t2048_b1', 'qlora_ckpt', 'qlora'),
      lst_over_lst_seed_peak_t2048: peak('t2048_b1', 'lst', 'lst_seed'),
      paper_condition_step_ratio_t2048: step('t2048_b1', 'lst_seed', 'qlora'),
      best_vs_best_step_ratio_t2048: step('t2048_b1', 'lst', 'qlora_ckpt'),
      // Training's peak over the backbone's inference pass alone (the same 4-bit weights, one
      // prefill of the same tokens): what training adds on top of serving.
      inference_peak_mb_t2048: num('t2048_b1', 'inference_peak_mb'),
      train_peak_over_inference_peak_t2048: peak('t2048_b1', 'lst', 'inference'),
      activation_cache_epochs: { T: CACHE_T, ...epochs },
      activation_cache_epoch_speedup: ratio(
        laterEpochsMs(epochs.without_cache),
        laterEpochsMs(epochs.with_cache),
      ),
      lst_mb_per_1k_tokens: slope('lst'),
      lst_seed_mb_per_1k_tokens: slope('lst_seed'),
      xladder_mb_per_1k_tokens: slope('xladder'),
      qlora_mb_per_1k_tokens: slope('qlora'),
      qlora_ckpt_mb_per_1k_tokens: slope('qlora_ckpt'),
    }),
  );
} finally {
  rmSync(root, { recursive: true, force: true });
}
