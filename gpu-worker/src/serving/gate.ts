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

/**
 * The trainer's side of the gate. Training holds a `train` turn while it computes and, at each
 * yield point (between micro-batches, backbone passes and optimizer steps), gives it up when
 * serving waits. A request then waits for one unit of training work at most (one micro-batch's
 * backbone pass or side step), not for a whole optimizer step or a window of staged passes.
 */
export class TrainingTurns {
  private release: Release | undefined;
  /** Turns given up to waiting serving work (observable: the bench and tests count them). */
  yielded = 0;

  constructor(
    private readonly gate: ComputeGate,
    private readonly onYield?: () => void,
  ) {}

  /** At a yield point: takes the turn when not held; gives it up first when serving waits. */
  readonly yieldPoint = async (): Promise<void> => {
    if (this.release && !this.gate.servingWaiting) return;
    if (this.release) {
      this.yielded++;
      this.onYield?.();
    }
    this.release?.();
    this.release = undefined;
    this.release = await this.gate.acquire('train');
  };

  /** Between optimizer steps: the turn goes back, and is taken again after waiting serving work. */
  readonly betweenSteps = async (): Promise<void> => {
    this.release?.();
    this.release = undefined;
    this.release = await this.gate.acquire('train');
  };

  /** Training ended (done, failed or stopped): the turn goes back. */
  end(): void {
    this.release?.();
    this.release = undefined;
  }
}
