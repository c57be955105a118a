import type { FineTuningJobEvent } from '@ladder/schemas';
import { z } from 'zod';
import { compact, duration } from './format.ts';
import type { Output } from './io.ts';

/** The training figures a job event carries in `data` (the edge copies them from the worker's events). */
const ProgressData = z.object({
  step: z.number().optional(),
  total_steps: z.number().optional(),
  epoch: z.number().nullish(),
  train_loss: z.number().nullish(),
  tokens_per_s: z.number().nullish(),
  eta_s: z.number().nullish(),
});

export interface TrainingProgress {
  step: number;
  totalSteps: number;
  loss: number | null;
  tokensPerS: number | null;
  etaS: number | null;
}

/**
 * The figures an event adds to what is known of the run: `metrics` events carry the loss, the
 * worker's pace messages tokens/s and eta; each keeps the last known value of what it lacks.
 */
export function progressOf(
  event: FineTuningJobEvent,
  known: TrainingProgress | null,
): TrainingProgress | null {
  const parsed = ProgressData.safeParse(event.data);
  if (!parsed.success || parsed.data.step === undefined) return null;
  const d = parsed.data;
  if (event.type !== 'metrics' && d.tokens_per_s == null) return null;
  return {
    step: d.step!,
    totalSteps: d.total_steps || known?.totalSteps || 0,
    loss: d.train_loss ?? known?.loss ?? null,
    tokensPerS: d.tokens_per_s ?? known?.tokensPerS ?? null,
    etaS: d.eta_s ?? known?.etaS ?? null,
  };
}

/**
 * `[██████░░░░░░] 120/400  30%  loss 1.2345  1.2k tok/s  eta 3m05s`; without a bar (plain
 * output) `step 120/400 (30%)  loss ...`.
 */
export function describeProgress(p: TrainingProgress, barWidth: number): string {
  const parts: string[] = [];
  if (p.totalSteps > 0) {
    const fraction = Math.min(1, p.step / p.totalSteps);
    const percent = `${Math.floor(fraction * 100)}%`;
    if (barWidth > 0) {
      const filled = Math.round(fraction * barWidth);
      parts.push(
        `[${'█'.repeat(filled)}${'░'.repeat(barWidth - filled)}] ${p.step}/${p.totalSteps}`,
        percent,
      );
    } else parts.push(`step ${p.step}/${p.totalSteps} (${percent})`);
  } else parts.push(`step ${p.step}`);
  if (p.loss !== null) parts.push(`loss ${p.loss.toFixed(4)}`);
  if (p.tokensPerS !== null) parts.push(`${compact(p.tokensPerS)} tok/s`);
  if (p.etaS !== null) parts.push(`eta ${duration(p.etaS)}`);
  return parts.join('  ');
}

/** A terminal's width; a pseudo-terminal without a size says 0. */
export function terminalColumns(out: Output): number {
  return out.columns || 80;
}

/**
 * A status line kept at the bottom: on a terminal it is redrawn in place (carriage return, erase
 * to the end of the line) and other lines are printed above it; elsewhere every update is its
 * own line, so logs stay readable.
 */
export class StatusLine {
  private current: string | null = null;

  constructor(private readonly out: Output) {}

  get redraws(): boolean {
    return this.out.isTTY === true;
  }

  update(text: string): void {
    if (!this.redraws) {
      this.out.write(`${text}\n`);
      return;
    }
    // Longer than the terminal, it would wrap and the carriage return could not redraw it.
    const width = Math.max(20, terminalColumns(this.out) - 1);
    this.current = [...text].slice(0, width).join('');
    this.out.write(`\r${this.current}\x1b[K`);
  }

  print(line: string): void {
    if (this.current === null) this.out.write(`${line}\n`);
    else this.out.write(`\r\x1b[K${line}\n${this.current}\x1b[K`);
  }

  /** Leaves the last status on screen and moves below it. */
  end(): void {
    if (this.current !== null) this.out.write('\n');
    this.current = null;
  }
}
