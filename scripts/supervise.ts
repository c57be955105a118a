// Restarts a child process that dies, with exponential backoff, as systemd's Restart=on-failure or
// a container orchestrator's restart policy would: `npm start` keeps its GPU worker up this way, so
// a training job the crash interrupted resumes from its last checkpoint in the next process.
import type { ChildProcess } from 'node:child_process';

export interface SuperviseOptions {
  /** Delay before the first restart; doubled after each crash that came soon after a start. */
  initialDelayMs: number;
  maxDelayMs: number;
  /** A process that ran this long is healthy again: the next crash restarts after initialDelayMs. */
  healthyAfterMs: number;
  /** More restarts than this within `windowMs` and the supervisor gives up (StartLimitBurst). */
  maxRestartsInWindow: number;
  windowMs: number;
  log: (line: string) => void;
}

export const SUPERVISE_DEFAULTS = {
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  healthyAfterMs: 60_000,
  maxRestartsInWindow: 10,
  windowMs: 10 * 60_000,
  log: (line: string) => console.error(line),
} satisfies SuperviseOptions;

export interface Supervised {
  /** The running process (a new one after each restart). */
  current(): ChildProcess;
  /** Restarts so far. */
  restarts(): number;
  /** Each (re)start after the first, with the new process. */
  onRestart(fn: (proc: ChildProcess) => void): void;
  /** Resolves when the supervisor gives up (crash loop); never while restarts succeed. */
  gaveUp: Promise<string>;
  /** No more restarts: what `stop()` of the whole platform calls before killing the process. */
  halt(): void;
}

export function supervise(
  name: string,
  start: () => ChildProcess,
  opts: Partial<SuperviseOptions> = {},
): Supervised {
  const o = { ...SUPERVISE_DEFAULTS, ...opts } satisfies SuperviseOptions;
  let halted = false;
  let restarts = 0;
  let delay = o.initialDelayMs;
  let startedAt = Date.now();
  const recent: number[] = [];
  const listeners: ((p: ChildProcess) => void)[] = [];
  let giveUp: (why: string) => void = () => {};
  const gaveUp = new Promise<string>((r) => {
    giveUp = r;
  });
  let proc: ChildProcess;
  const watch = (p: ChildProcess) => {
    p.once('exit', (code, signal) => {
      if (halted) return;
      const now = Date.now();
      if (now - startedAt >= o.healthyAfterMs) delay = o.initialDelayMs;
      while (recent.length && now - recent[0]! > o.windowMs) recent.shift();
      if (recent.length >= o.maxRestartsInWindow) {
        giveUp(`${name} exited ${recent.length + 1} times within ${o.windowMs / 1000} s; not restarting it`);
        return;
      }
      o.log(`${name} exited (${signal ?? `code ${code}`}); restarting it in ${delay} ms`);
      const wait = delay;
      delay = Math.min(o.maxDelayMs, delay * 2);
      setTimeout(() => {
        if (halted) return;
        recent.push(Date.now());
        restarts++;
        startedAt = Date.now();
        proc = start();
        watch(proc);
        for (const l of listeners) l(proc);
      }, wait);
    });
  };
  proc = start();
  watch(proc);
  return {
    current: () => proc,
    restarts: () => restarts,
    onRestart: (fn) => listeners.push(fn),
    gaveUp,
    halt: () => {
      halted = true;
    },
  };
}
