export type Release = () => void;

/**
 * One turn at a time on the accelerator, serving first. A decode step, a prefill or a score pass
 * takes a `serve` turn; a training step a `train` turn. While requests wait, training gets a turn
 * only after `servingTurnsPerTrainingTurn` serving turns, so a generation's step latency grows by
 * at most one training step and training never starves.
 */
export class ComputeGate {
  private held = false;
  private readonly serving: (() => void)[] = [];
  private readonly training: (() => void)[] = [];
  private servingTurns = 0;

  constructor(readonly servingTurnsPerTrainingTurn = 4) {}

  acquire(kind: 'serve' | 'train'): Promise<Release> {
    return new Promise((resolve) => {
      const grant = () => {
        this.held = true;
        if (kind === 'serve') this.servingTurns++;
        else this.servingTurns = 0;
        let done = false;
        resolve(() => {
          if (done) return;
          done = true;
          this.held = false;
          this.next();
        });
      };
      (kind === 'serve' ? this.serving : this.training).push(grant);
      if (!this.held) this.next();
    });
  }

  /** Serving work is waiting for a turn (the trainer checks this to yield early). */
  get servingWaiting(): boolean {
    return this.serving.length > 0;
  }

  private next(): void {
    if (this.held) return;
    const trainFirst =
      this.training.length > 0 &&
      (this.serving.length === 0 || this.servingTurns >= this.servingTurnsPerTrainingTurn);
    const grant = trainFirst ? this.training.shift() : (this.serving.shift() ?? this.training.shift());
    grant?.();
  }
}
