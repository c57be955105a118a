import { describeIssues, FineTuningJob, FineTuningJobEvent } from '@ladder/schemas';
import type { CommandContext } from './command.ts';
import { CliError, EXIT } from './errors.ts';
import { clockTime, integer, json } from './format.ts';
import {
  describeProgress,
  progressOf,
  StatusLine,
  type TrainingProgress,
  terminalColumns,
} from './progress.ts';

const TERMINAL = new Set<FineTuningJob['status']>(['succeeded', 'failed', 'cancelled']);
/** Consecutive broken streams tolerated before giving up. */
const MAX_RECONNECTS = 5;
const RECONNECT_DELAY_MS = 1000;

/**
 * Follows a job's server-sent events until it ends: progress events redraw one status line (step,
 * loss, tokens/s, eta), the others print above it. The edge closes a stream after a while, and a
 * stream can break; either way it is reopened after the last event seen. The answer is the exit
 * code: 0 succeeded (the model name printed on stdout), 1 failed, 3 cancelled.
 */
export async function watchJob(ctx: CommandContext, jobId: string): Promise<number> {
  const jobPath = `/v1/fine_tuning/jobs/${encodeURIComponent(jobId)}`;
  const status = new StatusLine(ctx.io.stderr);
  // The bar takes what the figures leave of the line; a narrow terminal gets `step n/N (p%)` instead.
  const room = Math.min(30, terminalColumns(ctx.io.stderr) - 56);
  const barWidth = status.redraws && room >= 10 ? room : 0;
  if (status.redraws && !ctx.settings.json)
    ctx.note(`watching ${jobId} (Ctrl-C stops watching; the job goes on: ladder jobs cancel ${jobId})`);
  let after: string | undefined;
  let known: TrainingProgress | null = null;
  let brokenStreams = 0;
  for (;;) {
    let received = 0;
    try {
      for await (const sse of ctx.client.events('GET', `${jobPath}/events`, {
        query: { stream: 'true', after },
      })) {
        if (sse.data === '[DONE]') break;
        const event = parseEvent(sse.data);
        after = event.id;
        received++;
        brokenStreams = 0;
        if (ctx.settings.json) ctx.out(JSON.stringify(event));
        else show(event);
      }
    } catch (err) {
      // API errors and an unreachable edge are final; a stream cut mid-way is reopened.
      if (err instanceof CliError || ++brokenStreams > MAX_RECONNECTS) throw err;
      status.print(`event stream broke (${(err as Error).message}); reconnecting`);
    }
    const job = await ctx.client.json(FineTuningJob, 'GET', jobPath);
    if (TERMINAL.has(job.status)) {
      status.end();
      return finish(ctx, job);
    }
    if (received === 0) await new Promise((r) => setTimeout(r, RECONNECT_DELAY_MS));
  }

  function show(event: FineTuningJobEvent): void {
    const progress = progressOf(event, known);
    // Plain output gets one line a step, a terminal every update (loss, then pace, of one step).
    const fresh = progress !== null && (known === null || progress.step > known.step);
    if (progress) known = progress;
    if (progress && status.redraws) status.update(describeProgress(progress, barWidth));
    else if (progress) {
      if (fresh) status.update(`${clockTime(event.created_at)}  ${describeProgress(progress, 0)}`);
    } else {
      const level = event.level === 'info' ? '' : `${event.level}: `;
      status.print(`${clockTime(event.created_at)}  ${level}${event.message}`);
    }
  }
}

function parseEvent(data: string): FineTuningJobEvent {
  let raw: unknown;
  try {
    raw = JSON.parse(data);
  } catch {
    throw new CliError(`unexpected job event (not JSON): ${data.slice(0, 200)}`);
  }
  const parsed = FineTuningJobEvent.safeParse(raw);
  if (!parsed.success) throw new CliError(`unexpected job event: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

function finish(ctx: CommandContext, job: FineTuningJob): number {
  if (ctx.settings.json) ctx.out(json(job));
  if (job.status === 'succeeded') {
    const tokens = job.trained_tokens === null ? '' : ` (${integer(job.trained_tokens)} training tokens)`;
    ctx.note(`job ${job.id} succeeded${tokens}; chat with it: ladder chat ${job.fine_tuned_model}`);
    if (!ctx.settings.json) ctx.out(job.fine_tuned_model ?? '');
    return EXIT.ok;
  }
  if (job.status === 'cancelled') {
    ctx.note(`job ${job.id} was cancelled`);
    return EXIT.cancelled;
  }
  const why = job.error ? `${job.error.message} (${job.error.code})` : 'no reason given';
  throw new CliError(`job ${job.id} failed: ${why}`, EXIT.failed);
}
