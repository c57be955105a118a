// Peak memory and step time of LST, xLadder and QLoRA on one generated 4-bit backbone (d=1024, 16 layers, V=32000) at T = 256/1024/2048, batch 1 and 4, each in its own process.
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
const METHODS = ['lst', 'xladder', 'qlora'] as const;

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
  mkdirSync(join(cache, 'qlora'), { recursive: true });
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

  const results: Record<string, Record<string, number | string>> = {};
  for (const T of SEQS) {
    for (const B of BATCHES) {
      const row: Record<string, number | string> = {};
      for (const method of METHODS) {
        const r = child({ method, T, B, ckpt, cache, steps: STEPS });
        if ('error' in r) row[`${method}_error`] = r.error!;
        else {
          row[`${method}_peak_mb`] = r.peak_mb!;
          row[`${method}_step_ms`] = r.step_ms!;
        }
        console.error(`T=${T} B=${B} ${method}: ${JSON.stringify(r)}`);
      }
      results[`t${T}_b${B}`] = row;
    }
  }
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
  console.log(
    JSON.stringify({
      bench: 'memory',
      backbone: { d: D, layers: LAYERS, vocab: 32000, bits: 4 },
      steps_measured: STEPS,
      // LST and xLadder run through the trainer (trainSideNet): two windows of W micro-batches,
      // the second timed with its backbone load; QLoRA runs its step STEPS times after a warm-up.
      side_nets: {
        taps: process.env.BENCH_SCHEDULE === 'interleaved' ? 'interleaved' : 'phased',
        window: Math.max(2, STEPS),
      },
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
      lst_mb_per_1k_tokens: slope('lst'),
      xladder_mb_per_1k_tokens: slope('xladder'),
      qlora_mb_per_1k_tokens: slope('qlora'),
    }),
  );
} finally {
  rmSync(root, { recursive: true, force: true });
}
