import { ApiException } from './errors.ts';

/**
 * Rendezvous (highest-random-weight) hashing: every worker gets a score hash(key, worker) and
 * the key goes to the highest. All edges agree without coordination, an adapter keeps landing on
 * the worker that has it warm, and when a worker leaves only its keys move (to their runner-up).
 */
export function rendezvousOrder<W extends { worker_id: string }>(key: string, workers: W[]): W[] {
  return workers
    .map((w) => ({ w, score: hash53(`${key}\u0000${w.worker_id}`) }))
    .sort((a, b) => b.score - a.score || a.w.worker_id.localeCompare(b.w.worker_id))
    .map((s) => s.w);
}

/** cyrb53: a fast 53-bit string hash, well mixed (https://github.com/bryc/code/blob/master/jshash/experimental/cyrb53.js). */
function hash53(s: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** Answers that mean "this worker cannot take it now": try the next one. */
const RETRYABLE = new Set([502, 503, 504]);

/**
 * Tries the workers in order until one answers; a connection error, a timeout or a 502/503/504
 * moves on to the next. Any other answer (including a 4xx) is the answer.
 */
export async function withFailover<W extends { worker_id: string }>(
  workers: W[],
  call: (w: W) => Promise<Response>,
): Promise<{ res: Response; worker: W; tried: string[] }> {
  const tried: string[] = [];
  for (const w of workers) {
    tried.push(w.worker_id);
    try {
      const res = await call(w);
      if (!RETRYABLE.has(res.status)) return { res, worker: w, tried };
      await res.body?.cancel();
    } catch (err) {
      console.warn(
        `edge: worker ${w.worker_id} failed (${(err as Error).name}: ${(err as Error).message}); trying the next`,
      );
    }
  }
  throw new ApiException(
    503,
    workers.length ? `No worker answered (tried ${tried.join(', ')}).` : 'No healthy worker is registered.',
    'server_error',
    'no_worker_available',
  );
}
