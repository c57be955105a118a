import { type Heartbeat, signRequest, WORKER_HEADER } from '@ladder/schemas';

/**
 * Heartbeats to the edge registry every `intervalMs` (the first at once): capacity and loaded
 * adapters. A failed beat is only logged; the next one tries again. Returns a stop function.
 */
export function startHeartbeats(opts: {
  edgeUrl: string;
  secret: string;
  intervalMs: number;
  beat: () => Heartbeat | undefined;
}): () => void {
  const url = new URL('/internal/v1/workers/heartbeat', opts.edgeUrl).toString();
  let failing = false;
  const send = async () => {
    const hb = opts.beat();
    if (!hb) return;
    const body = JSON.stringify(hb);
    try {
      const headers = await signRequest(opts.secret, 'POST', new URL(url).pathname, body);
      const res = await fetch(url, {
        method: 'POST',
        body,
        headers: { ...headers, [WORKER_HEADER]: hb.worker_id, 'content-type': 'application/json' },
        signal: AbortSignal.timeout(Math.max(1000, opts.intervalMs)),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      if (failing) console.log(`gpu-worker: heartbeats to ${url} recovered`);
      failing = false;
    } catch (e) {
      if (!failing) console.warn(`gpu-worker: heartbeat to ${url} failed: ${(e as Error).message}`);
      failing = true;
    }
  };
  void send();
  const timer = setInterval(() => void send(), opts.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
