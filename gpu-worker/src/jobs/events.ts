import { type JobEvent, signRequest, WORKER_HEADER } from '@ladder/schemas';

export interface EventPosterOptions {
  secret: string;
  /** Sent as x-ladder-worker: the edge verifies with this worker's own secret. */
  workerId: string;
  /** Backoff between tries: base * 2^n, capped. */
  baseDelayMs: number;
  maxDelayMs: number;
  timeoutMs: number;
}

export const EVENT_POSTER_DEFAULTS = {
  baseDelayMs: 100,
  maxDelayMs: 5_000,
  timeoutMs: 10_000,
} satisfies Partial<EventPosterOptions>;

/** One signed POST of a JobEvent; true when the edge acknowledged it (2xx, or 409: already had it). */
export async function postEvent(url: string, event: JobEvent, o: EventPosterOptions): Promise<boolean> {
  const body = JSON.stringify(event);
  const headers = await signRequest(o.secret, 'POST', new URL(url).pathname, body);
  try {
    const res = await fetch(url, {
      method: 'POST',
      body,
      headers: { ...headers, [WORKER_HEADER]: o.workerId, 'content-type': 'application/json' },
      signal: AbortSignal.timeout(o.timeoutMs),
    });
    await res.arrayBuffer().catch(() => undefined);
    // A 4xx other than 409/429 will not get better by retrying: the edge refuses this event.
    if (res.ok || res.status === 409) return true;
    if (res.status >= 400 && res.status < 500 && res.status !== 429) {
      console.warn(`gpu-worker: callback ${url} refused event ${event.event_id}: ${res.status}`);
      return true;
    }
    return false;
  } catch {
    return false;
  }
}

/** Posts until acknowledged, backing off; `stopped()` ends the retries (worker shutting down). */
export async function postWithRetries(
  url: string,
  event: JobEvent,
  o: EventPosterOptions,
  stopped: () => boolean,
): Promise<boolean> {
  for (let attempt = 0; !stopped(); attempt++) {
    if (await postEvent(url, event, o)) return true;
    await new Promise((r) => setTimeout(r, Math.min(o.maxDelayMs, o.baseDelayMs * 2 ** attempt)));
  }
  return false;
}
