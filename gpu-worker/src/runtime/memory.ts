import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// The memory housekeeping of a process that trains: glibc's malloc settings, and collecting the
// buffers onnxruntime hands back.

/**
 * glibc malloc settings for a process that runs training passes. A backbone pass allocates and
 * frees tens of MB per layer; glibc raises its mmap threshold after each large free (up to 32 MB),
 * so later blocks of that size come from the heap and, once freed, stay in the process's memory:
 * a 2k-token LST step kept ~1 GB more than it ever used at once. A fixed threshold sends every
 * block of 1 MB or more to mmap, which gives it back on free. Read at process start, so it is
 * set where a worker is spawned (scripts/platform.ts, the benchmarks); other allocators ignore it.
 */
export const MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: String(2 ** 20),
};

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
