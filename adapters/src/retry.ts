/**
 * Retries for calls to a remote store: exponential backoff with full jitter
 * (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/), a deadline per
 * attempt (a stalled connection must not hang a request forever), and a classifier that retries
 * only what can succeed on a second try: 5xx, 429, throttling, timeouts, dropped connections.
 */
export interface RetryOptions {
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Whole-attempt deadline: request, response and body. */
  attemptTimeoutMs: number;
}

export const RETRY_DEFAULTS: RetryOptions = {
  maxAttempts: 5,
  baseDelayMs: 100,
  maxDelayMs: 3_000,
  attemptTimeoutMs: 30_000,
};

export class AttemptTimeoutError extends Error {
  override name = 'TimeoutError';
}

const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
]);
const TRANSIENT_NAMES = new Set([
  'TimeoutError',
  'AbortError',
  'RequestTimeout',
  'RequestTimeoutException',
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'InternalError',
  'ServiceUnavailable',
  // A 409 from a conditional write racing another one; AWS says to retry.
  'ConditionalRequestConflict',
]);

/** Whether an error from the S3 client (or the socket under it) is worth another attempt. */
export function isTransient(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false;
  const err = e as {
    name?: string;
    code?: string;
    $metadata?: { httpStatusCode?: number };
    message?: string;
  };
  const status = err.$metadata?.httpStatusCode;
  if (status !== undefined && (status >= 500 || status === 429 || status === 408)) return true;
  if (err.name && TRANSIENT_NAMES.has(err.name)) return true;
  if (err.code && TRANSIENT_CODES.has(err.code)) return true;
  // Node's http client reports a dropped connection mid-response with these messages only.
  return /socket hang up|aborted|premature close|ECONNRESET|EPIPE/i.test(err.message ?? '');
}

/**
 * Runs `attempt` until it succeeds, fails with a non-transient error, or attempts run out. Each
 * attempt gets an AbortSignal that fires at its deadline; the attempt's promise is also raced
 * against the deadline so a callee that ignores the signal cannot hang us.
 */
export async function withRetries<T>(
  what: string,
  opts: RetryOptions,
  attempt: (signal: AbortSignal) => Promise<T>,
  onRetry?: (error: unknown, attempt: number) => void,
): Promise<T> {
  let last: unknown;
  for (let i = 1; i <= opts.maxAttempts; i++) {
    try {
      return await withDeadline(opts.attemptTimeoutMs, what, attempt);
    } catch (e) {
      last = e;
      if (!isTransient(e) || i === opts.maxAttempts) break;
      onRetry?.(e, i);
      const cap = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** (i - 1));
      await sleep(Math.random() * cap);
    }
  }
  throw new RetriesExhausted(what, last);
}

/** Carries the last underlying error; the store turns it into its own error type. */
export class RetriesExhausted extends Error {
  override name = 'RetriesExhausted';
  constructor(
    readonly what: string,
    readonly last: unknown,
  ) {
    super(`${what}: ${describe(last)}`, { cause: last });
  }
}

export function describe(e: unknown): string {
  if (typeof e !== 'object' || e === null) return String(e);
  const err = e as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = err.$metadata?.httpStatusCode;
  return `${err.name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}: ${err.message ?? ''}`.trim();
}

async function withDeadline<T>(
  ms: number,
  what: string,
  fn: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new AttemptTimeoutError(`${what}: no complete answer within ${ms} ms`);
      controller.abort(err);
      reject(err);
    }, ms);
  });
  try {
    const work = fn(controller.signal);
    // If the deadline wins, the abandoned attempt may still reject later: keep that quiet.
    work.catch(() => {});
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
