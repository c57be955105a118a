/**
 * The learning-rate schedule: linear warmup from 0, then a half cosine down to minRatio * lr
 * (as transformers' get_cosine_schedule_with_warmup, with a floor). Steps count updates from 1:
 *
 *   t <= W:   lr * t / W
 *   t >  W:   lr * (minRatio + (1 - minRatio) * (1 + cos(pi * (t - W) / (T - W))) / 2)
 *
 * so the first update already moves (no step at lr 0) and the last one runs at minRatio * lr.
 * A pure function of the step: a resumed run gets the same rates.
 */
export interface LrSchedule {
  peak: number;
  /** Warmup updates W (0: none). */
  warmupSteps: number;
  /** Total updates T. */
  totalSteps: number;
  minRatio: number;
}

export type Warmup = { steps: number } | { ratio: number };

/** W from a step count or a share of T (rounded up, as transformers' warmup_ratio), at most T. */
export function warmupSteps(warmup: Warmup, totalSteps: number): number {
  const w = 'steps' in warmup ? warmup.steps : Math.ceil(warmup.ratio * totalSteps);
  return Math.min(w, totalSteps);
}

export function learningRateAt(step: number, s: LrSchedule): number {
  if (!Number.isInteger(step) || step < 1) throw new RangeError(`learningRateAt: step ${step} must be >= 1`);
  if (step <= s.warmupSteps) return (s.peak * step) / s.warmupSteps;
  const decay = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = Math.min(1, (step - s.warmupSteps) / decay);
  return s.peak * (s.minRatio + ((1 - s.minRatio) * (1 + Math.cos(Math.PI * progress))) / 2);
}
