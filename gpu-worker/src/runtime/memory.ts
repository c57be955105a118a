import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { SessionOptions } from './session.ts';

// The memory housekeeping of a process that trains: glibc's malloc settings, and collecting the
// buffers onnxruntime hands back.

/**
 * glibc malloc settings for a process that runs training passes. Read at process start, so they
 * are set where a worker is spawned (scripts/platform.ts, the benchmarks); other allocators and
 * older glibc (before 2.35 for the tunable) ignore them.
 * - A fixed mmap threshold of 1 MB. A backbone pass allocates and frees tens of MB per layer;
 *   glibc raises its threshold after each large free (up to 32 MB), so later blocks of that size
 *   come from the heap and, once freed, stay in the process's memory: a 2k-token LST step kept
 *   ~1 GB more than it ever used at once. With the threshold fixed every block of 1 MB or more
 *   is mapped on its own and given back on free.
 * - Transparent huge pages for those blocks (glibc.malloc.hugetlb=1: glibc asks for them with
 *   madvise, which is all the kernel's default THP mode honours). Each freshly mapped block is
 *   faulted in by the kernel page by page; a 2k-token backbone pass faulted in ~11 GB of 4 kB
 *   pages, which cost more time than its arithmetic. With 2 MB pages the LST step of
 *   bench/memory ran 2.9x faster (57.9 -> 19.7 s) for 1.5% more peak (1006 -> 1021 MB).
 */
export const MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: String(2 ** 20),
  GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1',
};

/**
 * onnxruntime settings for the sessions of a training process (the side nets' backbone pass and
 * training step, the QLoRA step): no memory arena. Its power-of-two growth held up to twice a
 * step's activations (2.5 vs 1.75 GB for a 2k-token LST step), and each session's arena kept its
 * peak reserved while the other session ran. Steps run ~20% slower without it.
 *
 * The memory pattern (one block per run, laid out from the first run's buffer lifetimes) stays
 * on for the training steps: without it a 2k-token step peaked 3-8% lower (LST 998 vs 1024 MB,
 * QLoRA 3345 vs 3625) but ran 1.7-1.8x slower, every buffer then being fresh pages the kernel has
 * to fault in. The side nets' backbone pass turns it off (BackbonePass: lower, and no slower).
 */
export const TRAINING_SESSION: Readonly<Pick<SessionOptions, 'memoryArena'>> = { memoryArena: false };

/**
 * A full garbage collection now. onnxruntime-node hands every output back in a fresh
 * ArrayBuffer; V8 frees those only at its next collection, which a heap of a few MB of JS
 * objects rarely asks for, so a long batch's taps (150 MB at 2k tokens) lived on into the next
 * batch's backbone pass. The trainer calls this after a big micro-batch; a collection of its
 * small heap takes milliseconds against a step's seconds. Resolves once the freed buffers are
 * released.
 */
export async function collectGarbage(): Promise<void> {
  collector ??= exposeGc();
  collector();
  // V8 frees dead ArrayBuffers' memory on a background sweeper after the collection, and native
  // finalizers run on a later turn of the event loop; a second collection waits for both.
  await new Promise((resolve) => setImmediate(resolve));
  collector();
}

let collector: (() => void) | undefined;

/** V8's `gc`, exposed at run time (the same as starting node with --expose-gc). */
function exposeGc(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (typeof existing === 'function') return existing;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}
