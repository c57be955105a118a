import { type JobEvent, JobEventAck, signRequest, WORKER_HEADER } from '@ladder/schemas';

export interface EventPosterOptions {
  secret: string;
  /** Sent as x-ladder-worker: the edge verifies with this worker's own secret. */
  workerId: string;
  /** Backoff between tries: base * 2^n, capped. */
  baseDelayMs: number;
  maxDelayMs: number;
  timeoutMs: number;
  log: (line: string) => void;
}

export const EVENT_POSTER_DEFAULTS = {
  baseDelayMs: 100,
  maxDelayMs: 5_000,
  timeoutMs: 10_000,
  log: (line: string) => console.warn(line),
} satisfies Partial<EventPosterOptions>;

/** The events that end a job: never dropped, whatever the edge answers. */
export const TERMINAL_EVENTS: readonly JobEvent['type'][] = ['succeeded', 'failed', 'cancelled'];

/**
 * What one POST came to. `acknowledged`: the edge has the event (2xx, or 409: it had it already),
 * with the job's status at the edge when its answer said. `refused`: a 4xx that retrying the same
 * bytes will not change by itself (a bad signature, clock skew, an unknown job). `failed`: no
 * answer, a 5xx, a 408 or a 429: try again.
 */
export type PostOutcome =
  | { kind: 'acknowledged'; jobStatus: string | undefined }
  | { kind: 'refused'; status: number }
  | { kind: 'failed'; reason: string };

/** One signed POST of a JobEvent. */
export async function postEvent(url: string, event: JobEvent, o: EventPosterOptions): Promise<PostOutcome> {
  const body = JSON.stringify(event);
  const headers = await signRequest(o.secret, 'POST', new URL(url).pathname, body);
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, {
      method: 'POST',
      body,
      headers: { ...headers, [WORKER_HEADER]: o.workerId, 'content-type': 'application/json' },
      signal: AbortSignal.timeout(o.timeoutMs),
    });
    text = await res.text();
  } catch (e) {
    return { kind: 'failed', reason: (e as Error).message };
  }
  if (res.ok || res.status === 409) return { kind: 'acknowledged', jobStatus: ackStatus(text) };
  if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429)
    return { kind: 'refused', status: res.status };
  return { kind: 'failed', reason: `HTTP ${res.status}` };
}

/** The edge's `job_status`, if its answer carries one (a 409, or an older edge, may not). */
function ackStatus(text: string): string | undefined {
  try {
    const parsed = JobEventAck.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data.job_status : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Posts until the event is settled, backing off (base * 2^n, capped at maxDelayMs). A non-terminal
 * event the edge refuses is dropped (logged): the next progress says more. A terminal event is
 * never dropped: a refusal (a rotated secret, clock skew, a 404 while the edge is restored) is
 * logged and retried like any failure, since dropping it would lose the adapter and its billing;
 * the outbox is on disk, so a restart retries it too. Undefined when `stopped()` ended the
 * retries (the worker shutting down).
 */
export async function postWithRetries(
  url: string,
  event: JobEvent,
  o: EventPosterOptions,
  stopped: () => boolean,
): Promise<PostOutcome | undefined> {
  const terminal = TERMINAL_EVENTS.includes(event.type);
  for (let attempt = 0; !stopped(); attempt++) {
    const outcome = await postEvent(url, event, o);
    if (outcome.kind === 'acknowledged') return outcome;
    if (outcome.kind === 'refused') {
      if (!terminal) {
        o.log(
          `gpu-worker: callback ${url} refused event ${event.event_id} (HTTP ${outcome.status}): dropped`,
        );
        return outcome;
      }
      // Logged on the first refusal and then at doubling intervals, not at every try.
      if ((attempt & (attempt + 1)) === 0)
        o.log(
          `gpu-worker: callback ${url} refused final event ${event.event_id} (HTTP ${outcome.status}, ` +
            `try ${attempt + 1}): kept, retrying`,
        );
    }
    await sleep(Math.min(o.maxDelayMs, o.baseDelayMs * 2 ** Math.min(attempt, 30)), stopped);
  }
  return undefined;
}

/** Waits `ms`, waking early (in steps of at most 200 ms) once `stopped()`; never holds the process open. */
async function sleep(ms: number, stopped: () => boolean): Promise<void> {
  const until = Date.now() + ms;
  while (!stopped() && Date.now() < until) {
    await new Promise<void>((r) => setTimeout(r, Math.min(200, until - Date.now())).unref());
  }
}
