import { join } from 'node:path';
import type { AdapterStore } from '@ladder/adapters';
import {
  type JobEvent,
  type JobStatus,
  type StartJobRequest,
  type StartJobResponse,
  signRequest,
} from '@ladder/schemas';
import type { WorkerConfig } from '../config.ts';
import { type ComputeGate, TrainingTurns } from '../serving/gate.ts';
import type { WorkerMetrics } from '../serving/metrics.ts';
import type { ServingModel } from '../serving/model.ts';
import { resolveSideNet, type SideNetShape } from '../side-net/config.ts';
import { prepareDataset, splitValidation, type TrainingExample } from '../side-net/data/index.ts';
import {
  type CheckpointSink,
  checkpointStoreSink,
  manifestTraining,
  type SideNetChoice,
  sideNetInput,
  TrainingAbortedError,
  trainSideNet,
} from '../side-net/trainer/index.ts';
import { EVENT_POSTER_DEFAULTS, type EventPosterOptions, postWithRetries } from './events.ts';
import { estimateTrainingMemory } from './memory.ts';
import { jobDatasetName, type PurgeReport, purgeJobData, sweepStagedTaps } from './purge.ts';
import type { JobRecord, JobRecordStore } from './records.ts';
import { contextWarning, type JobTraining, jobTraining } from './training.ts';

type StepMetrics = NonNullable<JobEvent['metrics']>;

export type JobRunnerConfig = Pick<
  WorkerConfig,
  | 'LADDER_BACKBONE_DIR'
  | 'LADDER_CACHE_DIR'
  | 'LADDER_DATA_DIR'
  | 'LADDER_WORKER_SECRET'
  | 'LADDER_WORKER_ID'
  | 'LADDER_EXECUTION_PROVIDER'
  | 'LADDER_INTRA_OP_THREADS'
  | 'LADDER_MEMORY_BUDGET_MB'
  | 'LADDER_MAX_TRAINING_JOBS'
  | 'LADDER_CHECKPOINT_EVERY_STEPS'
  | 'LADDER_CHECKPOINT_EVERY_S'
  | 'LADDER_PROGRESS_EVERY_STEPS'
  | 'LADDER_ACTIVATION_CACHE'
>;

/** A job refused before it starts (bad config for this backbone, over the memory budget). */
export class JobRefusedError extends Error {
  override name = 'JobRefusedError';
  constructor(
    message: string,
    readonly code: 'invalid_side_net' | 'insufficient_memory' | 'job_conflict',
  ) {
    super(message);
  }
}

export interface JobView {
  job_id: string;
  tenant: string;
  status: JobStatus;
  step: number;
  total_steps: number;
  resumed_from_step: number;
  adapter: JobRecord['adapter'];
  billed_training_tokens: number | null;
  error: string | null;
}

const TERMINAL: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];
/** Not terminal, and not resumed until a StartJobRequest with a higher attempt asks for it. */
const PAUSED: JobStatus = 'paused';
/** Edge statuses that end a job wherever it runs (its tenant cancelled it, its lease gave up, another worker finished it). */
const ENDED_AT_EDGE = new Set(['cancelled', 'failed', 'succeeded']);
const MAX_LENGTH = 1024;

/**
 * Training jobs in the serving process. A job is a record on disk first (so a restart finds it),
 * then a run of the side-net trainer with checkpoints in the AdapterStore; a restarted worker
 * resumes every unfinished job from its latest checkpoint. Events go through a persisted outbox:
 * posted until acknowledged, with ids fixed by (job, kind, step) so a repeat is recognisable,
 * and a step already reported is not reported again after a resume. Training holds a `train`
 * turn of the compute gate and gives it up to waiting requests at every yield point inside a
 * step (micro-batches, backbone passes) and between steps, so serving goes first.
 */
export class JobRunner {
  private readonly jobs = new Map<string, JobRecord>();
  private readonly active = new Map<string, AbortController>();
  private readonly waiting: string[] = [];
  private readonly flushing = new Set<string>();
  private readonly poster: EventPosterOptions;
  private stopped = false;
  readonly running = new Set<Promise<void>>();

  constructor(
    private readonly config: JobRunnerConfig,
    private readonly model: ServingModel,
    private readonly store: AdapterStore,
    private readonly records: JobRecordStore,
    private readonly gate: ComputeGate,
    private readonly metrics: WorkerMetrics,
  ) {
    this.poster = {
      ...EVENT_POSTER_DEFAULTS,
      secret: config.LADDER_WORKER_SECRET,
      workerId: config.LADDER_WORKER_ID,
    };
    for (const r of records.all()) this.jobs.set(r.request.job_id, r);
    this.publishGauge();
  }

  /** Every job left queued or running by an earlier process, from its latest checkpoint; pending events re-sent. */
  resumeAll(): void {
    sweepStagedTaps(this.config.LADDER_DATA_DIR);
    for (const r of this.jobs.values()) {
      if (TERMINAL.includes(r.status) && !r.data_purged) this.cleanup(r.request.job_id);
      if (!TERMINAL.includes(r.status) && r.status !== PAUSED) this.enqueue(r.request.job_id);
      if (r.outbox.length) this.flush(r.request.job_id);
    }
  }

  /** Accepts a job (idempotent by job id: the same id gets the job's current state). */
  async start(req: StartJobRequest): Promise<StartJobResponse> {
    const known = this.jobs.get(req.job_id);
    if (known) {
      if (known.request.tenant !== req.tenant)
        throw new JobRefusedError(`job ${req.job_id} belongs to another tenant`, 'job_conflict');
      const newer = req.attempt > known.request.attempt;
      if (newer) {
        // A newer lease: report to its callback from now on; a paused job resumes under it.
        this.save({
          ...known,
          status: known.status === PAUSED ? 'queued' : known.status,
          request: { ...known.request, attempt: req.attempt, callback_url: req.callback_url },
        });
      }
      const now = this.jobs.get(req.job_id)!;
      if (
        !TERMINAL.includes(now.status) &&
        now.status !== PAUSED &&
        !this.active.has(req.job_id) &&
        !this.waiting.includes(req.job_id)
      )
        this.enqueue(req.job_id);
      return this.ack(this.jobs.get(req.job_id)!);
    }
    const shape = this.shapeOf(req);
    this.checkMemory(req, shape);
    const latest = await this.tenantStore(req.tenant).checkpoints.latest(req.job_id);
    const rec = this.save({
      request: req,
      status: 'queued',
      resumed_from_step: latest?.record.step ?? 0,
      step: latest?.record.step ?? 0,
      total_steps: 0,
      tokens: 0,
      reported_step: 0,
      outbox: [],
      started_sent: false,
      adapter: null,
      billed_training_tokens: null,
      error: null,
      updated_at: new Date().toISOString(),
    });
    this.enqueue(req.job_id);
    return this.ack(rec);
  }

  status(jobId: string): JobView | undefined {
    const r = this.jobs.get(jobId);
    if (!r) return undefined;
    return {
      job_id: jobId,
      tenant: r.request.tenant,
      status: r.status,
      step: r.step,
      total_steps: r.total_steps,
      resumed_from_step: r.resumed_from_step,
      adapter: r.adapter,
      billed_training_tokens: r.billed_training_tokens,
      error: r.error,
    };
  }

  /** Cancels a queued, paused or running job (a running one stops after its current step, checkpointed). */
  cancel(jobId: string): JobView | undefined {
    const r = this.jobs.get(jobId);
    if (!r) return undefined;
    const waitingAt = this.waiting.indexOf(jobId);
    if (waitingAt >= 0) {
      this.waiting.splice(waitingAt, 1);
      this.finish(r, 'cancelled', 'cancelled before it started');
    } else if (r.status === PAUSED) this.finish(r, 'cancelled', 'cancelled while paused');
    else this.active.get(jobId)?.abort('cancel');
    return this.status(jobId);
  }

  /**
   * Pauses a queued or running job: a running one checkpoints at its next step boundary and
   * stops; either way a `paused` event follows. A StartJobRequest for the job with a higher
   * attempt resumes it from that checkpoint. Pausing a paused or finished job changes nothing.
   */
  pause(jobId: string): JobView | undefined {
    const r = this.jobs.get(jobId);
    if (!r) return undefined;
    const waitingAt = this.waiting.indexOf(jobId);
    if (waitingAt >= 0) {
      this.waiting.splice(waitingAt, 1);
      this.paused(r);
    } else this.active.get(jobId)?.abort('pause');
    return this.status(jobId);
  }

  get runningJobs(): number {
    return this.active.size;
  }

  /** Stops training (each running job checkpoints and stays resumable) and event retries. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const a of this.active.values()) a.abort('shutdown');
    await Promise.allSettled([...this.running]);
  }

  private ack(r: JobRecord): StartJobResponse {
    return { job_id: r.request.job_id, status: r.status, resumed_from_step: r.resumed_from_step };
  }

  private tenantStore(tenant: string): AdapterStore {
    return this.store.forTenant(tenant);
  }

  private choice(req: StartJobRequest): SideNetChoice {
    const hp = req.method.hyperparameters;
    const overrides = { reduction_factor: hp.reduction_factor, init: hp.init };
    if (req.method.type === 'lst') return { preset: 'lst', overrides };
    const delta = hp.xladder_depth ?? Math.max(1, Math.floor(this.model.config.layers / 4));
    return { preset: 'xladder', delta, overrides };
  }

  private shapeOf(req: StartJobRequest): SideNetShape {
    try {
      return resolveSideNet(this.model.config, sideNetInput(this.choice(req), this.model.config));
    } catch (e) {
      throw new JobRefusedError(`method: ${(e as Error).message}`, 'invalid_side_net');
    }
  }

  private checkMemory(req: StartJobRequest, shape: SideNetShape): void {
    const w = this.model.backbone.build.meta.weightBytes;
    const est = estimateTrainingMemory(this.model.config, shape, {
      batchTokens: req.method.hyperparameters.batch_tokens,
      maxLength: Math.min(MAX_LENGTH, this.model.config.maxPositions),
      backboneWeightBytes: w.linear + w.other,
    });
    const budget = this.config.LADDER_MEMORY_BUDGET_MB * 1024 * 1024;
    if (est.bytes > budget) {
      const mb = (n: number) => Math.ceil(n / 1024 / 1024);
      const top = Object.entries(est.parts)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 2)
        .map(([k, v]) => `${k} ${mb(v)} MB`)
        .join(', ');
      throw new JobRefusedError(
        `job ${req.job_id} needs about ${mb(est.bytes)} MB to train (${top}), over this worker's memory budget of ` +
          `${this.config.LADDER_MEMORY_BUDGET_MB} MB: lower hyperparameters.batch_tokens or raise reduction_factor`,
        'insufficient_memory',
      );
    }
  }

  private paused(r: JobRecord): void {
    const rec = this.save({ ...r, status: PAUSED });
    this.emit(rec, 'paused', `${r.request.job_id}-paused-a${r.request.attempt}`, {
      message: `paused at step ${r.step}`,
    });
  }

  private save(r: JobRecord): JobRecord {
    const saved = this.records.put(r);
    this.jobs.set(r.request.job_id, saved);
    this.publishGauge();
    return saved;
  }

  private publishGauge(): void {
    const counts: Record<string, number> = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
    for (const r of this.jobs.values()) counts[r.status]!++;
    for (const [status, n] of Object.entries(counts)) this.metrics.jobs.set(n, { status });
  }

  private enqueue(jobId: string): void {
    this.waiting.push(jobId);
    this.pump();
  }

  private pump(): void {
    while (!this.stopped && this.active.size < this.config.LADDER_MAX_TRAINING_JOBS && this.waiting.length) {
      const jobId = this.waiting.shift()!;
      const abort = new AbortController();
      this.active.set(jobId, abort);
      const p = this.run(jobId, abort.signal)
        .catch((e) => console.error(`gpu-worker: job ${jobId}: ${(e as Error).stack ?? e}`))
        .finally(() => {
          this.active.delete(jobId);
          this.running.delete(p);
          this.pump();
        });
      this.running.add(p);
    }
  }

  /** Queues an event (persisted first), then posts it in the background. */
  private emit(r: JobRecord, type: JobEvent['type'], id: string, fields: Partial<JobEvent> = {}): JobRecord {
    const event: JobEvent = {
      event_id: id,
      job_id: r.request.job_id,
      tenant: r.request.tenant,
      type,
      created_at: new Date().toISOString(),
      message: '',
      step: r.step,
      total_steps: r.total_steps,
      epoch: 0,
      loss: null,
      eval_loss: null,
      learning_rate: null,
      tokens_per_s: null,
      eta_s: null,
      ...fields,
    };
    const saved = this.save({ ...r, outbox: [...r.outbox, event] });
    this.flush(r.request.job_id);
    return saved;
  }

  private flush(jobId: string): void {
    if (this.flushing.has(jobId)) return;
    this.flushing.add(jobId);
    void (async () => {
      try {
        for (;;) {
          const r = this.jobs.get(jobId)!;
          const event = r.outbox[0];
          if (!event) return;
          const outcome = await postWithRetries(
            r.request.callback_url,
            event,
            this.poster,
            () => this.stopped,
          );
          if (!outcome) return;
          const now = this.jobs.get(jobId)!;
          this.save({ ...now, outbox: now.outbox.filter((e) => e.event_id !== event.event_id) });
          if (outcome.kind === 'acknowledged' && outcome.jobStatus) this.followEdge(jobId, outcome.jobStatus);
        }
      } finally {
        this.flushing.delete(jobId);
      }
    })();
  }

  /**
   * The edge's status for a job, from its answer to a callback, wins over this worker's: a job the
   * edge has ended stops here (a cancel whose POST .../cancel never arrived, a lease that gave up,
   * a run that succeeded on another worker) and one it paused pauses. The stop is the same as a
   * cancel's: the cancelled event bills the tokens trained so far, and the job's data is deleted.
   */
  private followEdge(jobId: string, edgeStatus: string): void {
    const r = this.jobs.get(jobId);
    if (!r || TERMINAL.includes(r.status) || r.status === PAUSED) return;
    if (ENDED_AT_EDGE.has(edgeStatus)) {
      console.warn(`gpu-worker: the edge reports job ${jobId} ${edgeStatus}; stopping it`);
      this.cancel(jobId);
    } else if (edgeStatus === PAUSED && this.active.has(jobId)) {
      console.warn(`gpu-worker: the edge reports job ${jobId} paused; pausing it`);
      this.pause(jobId);
    }
  }

  /** Outbox drained (tests and shutdown use it). */
  async drained(jobId: string, timeoutMs = 10_000): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if ((this.jobs.get(jobId)?.outbox.length ?? 0) === 0) return true;
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  }

  private finish(
    r: JobRecord,
    status: 'succeeded' | 'failed' | 'cancelled',
    message: string,
    extra: Partial<JobEvent> = {},
  ) {
    const rec = this.save({ ...r, status, error: status === 'failed' ? message : null });
    // A cancelled job bills what it trained before it stopped (once per job at the edge, like a
    // success): cancel-and-recreate must not be free training.
    const trained =
      status === 'cancelled' ? { billed_training_tokens: r.tokens, trained_tokens: r.tokens } : {};
    this.emit(rec, status, `${r.request.job_id}-${status}`, { message, ...trained, ...extra });
    this.cleanup(r.request.job_id);
  }

  /**
   * A finished job's training data goes from this worker at once: the cached training files, the
   * activation cache and the checkpoints (a succeeded job's adapter holds its final weights; a
   * failed or cancelled one is never resumed). Retried by the sweep at the next start if it fails.
   */
  private cleanup(jobId: string): void {
    const r = this.jobs.get(jobId)!;
    void purgeJobData(this.tenantStore(r.request.tenant), this.config.LADDER_DATA_DIR, jobId, {
      checkpoints: true,
    }).then(
      () => this.save({ ...this.jobs.get(jobId)!, data_purged: true }),
      (e) => console.error(`gpu-worker: cleaning up job ${jobId}: ${(e as Error).message}`),
    );
  }

  /**
   * The edge deleted a model or a training file: everything this worker keeps of the job goes
   * (with `adapterId`, its adapter too). A job still training keeps what it holds in memory and
   * its checkpoints, and is cleaned up when it ends. Undefined: the job is another tenant's.
   */
  async purge(tenant: string, jobId: string, adapterId?: string): Promise<PurgeReport | undefined> {
    const r = this.jobs.get(jobId);
    if (r && r.request.tenant !== tenant) return undefined;
    const live = r !== undefined && !TERMINAL.includes(r.status);
    return purgeJobData(this.tenantStore(tenant), this.config.LADDER_DATA_DIR, jobId, {
      checkpoints: !live,
      adapterId,
    });
  }

  private async trainingText(r: JobRecord, url: string, kind: 'train' | 'validation'): Promise<string> {
    const datasets = this.tenantStore(r.request.tenant).datasets;
    const name = jobDatasetName(r.request.job_id, kind);
    try {
      return new TextDecoder().decode(await datasets.get(name));
    } catch {
      // Not cached yet: fetch from the edge.
    }
    const headers = await signRequest(this.config.LADDER_WORKER_SECRET, 'GET', new URL(url).pathname, '');
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(60_000) });
    if (!res.ok) throw new Error(`${kind} file: GET ${new URL(url).pathname} answered ${res.status}`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    await datasets.put(name, bytes);
    return new TextDecoder().decode(bytes);
  }

  private async run(jobId: string, signal: AbortSignal): Promise<void> {
    const req = this.jobs.get(jobId)!.request;
    const store = this.tenantStore(req.tenant);
    const latest = await store.checkpoints.latest(jobId).catch(() => undefined);
    let r = this.save({
      ...this.jobs.get(jobId)!,
      status: 'running',
      resumed_from_step: latest?.record.step ?? 0,
    });
    // Training holds a compute turn while it works and gives it up at each yield point when
    // requests wait, so a request waits for one unit of training work, not a whole step.
    const turns = new TrainingTurns(this.gate, () => this.metrics.trainingYields.inc());
    try {
      const tokenizer = this.model.tokenizer;
      const maxLength = Math.min(MAX_LENGTH, this.model.config.maxPositions);
      const data = prepareDataset(await this.trainingText(r, req.training_file_url, 'train'), tokenizer, {
        maxLength,
      });
      let train: TrainingExample[] = data.examples;
      let validation: TrainingExample[] | undefined;
      const warnings = [contextWarning('training', data.stats, maxLength)];
      if (req.validation_file_url) {
        const text = await this.trainingText(r, req.validation_file_url, 'validation');
        const prepared = prepareDataset(text, tokenizer, {
          maxLength,
          format: data.format,
          ...(data.labels ? { labels: data.labels } : {}),
        });
        validation = prepared.examples;
        warnings.push(contextWarning('validation', prepared.stats, maxLength));
      } else if (req.method.hyperparameters.validation_fraction > 0) {
        const split = splitValidation(
          train,
          { fraction: req.method.hyperparameters.validation_fraction },
          req.seed,
        );
        train = split.train;
        validation = split.validation;
      }
      const plan = jobTraining(req.method.hyperparameters, train.length, req.seed);
      r = this.started(this.jobs.get(jobId)!, plan, warnings);

      let last: StepMetrics | undefined;
      const inner = checkpointStoreSink(store, jobId);
      const sink: CheckpointSink = {
        loadLatest: () => inner.loadLatest(),
        save: async (step, bytes, metadata) => {
          await inner.save(step, bytes, metadata);
          r = this.emit(this.jobs.get(jobId)!, 'checkpoint', `${jobId}-checkpoint-${step}`, {
            step,
            message: `checkpoint at step ${step}`,
            ...(last?.step === step ? { metrics: last } : {}),
          });
        },
      };
      let tokens = r.tokens;
      const result = await trainSideNet({
        modelDir: this.config.LADDER_BACKBONE_DIR!,
        buildCacheDir: this.config.LADDER_CACHE_DIR,
        sideNet: this.choice(req),
        train,
        ...(validation?.length ? { validation, evaluation: { everySteps: plan.evalEverySteps } } : {}),
        ...(data.labels ? { labels: data.labels } : {}),
        hyperparameters: plan.hyperparameters,
        session: {
          provider: this.config.LADDER_EXECUTION_PROVIDER,
          intraOpThreads: this.config.LADDER_INTRA_OP_THREADS,
        },
        checkpoint: {
          sink,
          everySteps: this.config.LADDER_CHECKPOINT_EVERY_STEPS,
          everySeconds: this.config.LADDER_CHECKPOINT_EVERY_S,
        },
        // Staged taps on the worker's disk, beside its other files (the phased schedule).
        taps: { kind: 'phased', dir: join(this.config.LADDER_DATA_DIR, 'taps') },
        ...(this.config.LADDER_ACTIVATION_CACHE
          ? {
              activationCache: {
                dir: join(this.config.LADDER_DATA_DIR, 'activations', jobId),
                maxBytes: 256 * 1024 ** 2,
              },
            }
          : {}),
        signal,
        yieldPoint: turns.yieldPoint,
        onProgress: async (p) => {
          this.metrics.trainingSteps.inc();
          this.metrics.trainingTokens.inc(Math.max(0, p.tokens - tokens));
          tokens = p.tokens;
          last = {
            step: p.step,
            train_loss: p.loss,
            train_mean_token_accuracy: p.tokenAccuracy,
            ...(p.valid
              ? { valid_loss: p.valid.loss, valid_mean_token_accuracy: p.valid.tokenAccuracy }
              : {}),
          };
          let rec: JobRecord = {
            ...this.jobs.get(jobId)!,
            step: p.step,
            total_steps: p.totalSteps,
            tokens: p.tokens,
          };
          const fresh = p.step > rec.reported_step;
          if (fresh && (p.step % plan.metricsEverySteps === 0 || p.valid || p.step === p.totalSteps))
            rec = this.emit(rec, 'metrics', `${jobId}-metrics-${p.step}`, {
              step: p.step,
              epoch: p.epoch,
              loss: p.loss,
              eval_loss: p.valid?.loss ?? null,
              learning_rate: p.lr,
              metrics: last,
            });
          const due = p.step % this.config.LADDER_PROGRESS_EVERY_STEPS === 0 || p.step === p.totalSteps;
          if (due && fresh) {
            rec = this.emit({ ...rec, reported_step: p.step }, 'progress', `${jobId}-progress-${p.step}`, {
              step: p.step,
              epoch: p.epoch,
              loss: p.loss,
              learning_rate: p.lr,
              tokens_per_s: p.tokensPerSecond,
              eta_s: p.etaSeconds,
            });
          } else this.save(fresh ? { ...rec, reported_step: p.step } : rec);
          // Between steps: serving first (the gate grants training a turn every few serving turns).
          await turns.betweenSteps();
        },
      });
      turns.end();
      const manifest = await store.put({
        adapterId: jobId,
        version: 1,
        name: req.suffix || jobId,
        backbone: { name: this.model.name, fingerprint: result.backbone.fingerprint },
        sideNet: result.sideNet,
        training: manifestTraining(result.summary, jobId),
        weights: result.toAdapterWeights(),
      });
      const rec = this.save({
        ...this.jobs.get(jobId)!,
        adapter: manifest,
        billed_training_tokens: result.summary.billableTokens,
        step: result.summary.steps,
      });
      const s = result.summary;
      const acc = s.accuracy;
      this.finish(rec, 'succeeded', acc ? `accuracy ${acc.accuracy}` : 'adapter published', {
        step: s.steps,
        total_steps: s.steps,
        loss: s.finalTrainLoss,
        eval_loss: s.finalEvalLoss,
        metrics: {
          step: s.steps,
          train_loss: last?.train_loss ?? s.finalTrainLoss,
          train_mean_token_accuracy: last?.train_mean_token_accuracy ?? s.finalTrainTokenAccuracy,
          ...(last?.valid_loss !== undefined
            ? { valid_loss: last.valid_loss, valid_mean_token_accuracy: last.valid_mean_token_accuracy }
            : {}),
          ...(s.finalEvalLoss !== null && s.finalEvalTokenAccuracy !== null
            ? { full_valid_loss: s.finalEvalLoss, full_valid_mean_token_accuracy: s.finalEvalTokenAccuracy }
            : {}),
        },
        adapter: manifest,
        billed_training_tokens: s.billableTokens,
        trained_tokens: s.tokensSeen,
      });
    } catch (e) {
      turns.end();
      const rec = this.jobs.get(jobId)!;
      if (e instanceof TrainingAbortedError && signal.reason === 'shutdown') return; // resumes on restart
      if (e instanceof TrainingAbortedError && signal.reason === 'pause') this.paused(rec);
      else if (e instanceof TrainingAbortedError) this.finish(rec, 'cancelled', e.message);
      else this.finish(rec, 'failed', (e as Error).message.slice(0, 4000));
    }
  }

  /** The `started` event (once per job) with the resolved hyperparameters, and any data warnings. */
  private started(r: JobRecord, plan: JobTraining, warnings: (string | null)[]): JobRecord {
    if (r.started_sent) return r;
    const jobId = r.request.job_id;
    const { n_epochs, batch_size, learning_rate } = plan.resolved;
    let rec = this.emit(
      { ...r, started_sent: true, total_steps: plan.totalSteps },
      'started',
      `${jobId}-started`,
      {
        message: r.resumed_from_step
          ? `resuming from step ${r.resumed_from_step}`
          : `training started: ${n_epochs} epochs, batch size ${batch_size}, learning rate ${learning_rate}`,
        total_steps: plan.totalSteps,
        learning_rate,
        hyperparameters: plan.resolved,
      },
    );
    for (const [i, message] of warnings.entries())
      if (message) rec = this.emit(rec, 'warning', `${jobId}-warning-${i}`, { message });
    return rec;
  }
}
