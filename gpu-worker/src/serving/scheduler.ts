import type { Lease } from '@ladder/adapters';
import {
  type FinishReason,
  lastRows,
  type SamplingParams,
  StopWatcher,
  sampleToken,
} from '../backbone/generate/index.ts';
import { IO } from '../backbone/graph/emit.ts';
import type { IncrementalDecoder } from '../backbone/tokenizer/index.ts';
import { f32, i64, type Session, type Tensor, zeros } from '../runtime/index.ts';
import { SIDE_IO } from '../side-net/steps.ts';
import { Rng } from '../util/rng.ts';
import type { ReadyAdapter } from './adapters.ts';
import type { ComputeGate } from './gate.ts';
import { maskRow, PackedKv, type RowKv, selectRows } from './kv.ts';
import type { WorkerMetrics } from './metrics.ts';
import type { ServingModel, SideModel } from './model.ts';
import { backbonePrefill, type PrefillRow } from './prefill.ts';
import { PrefixCache, type PromptActs, type PromptKeys } from './prefix-cache.ts';
import { RowWeights, stackRows, swapRemovePlan } from './row-weights.ts';

export interface SchedulerOptions {
  maxBatch: number;
  maxBatchTokens: number;
  maxQueue: number;
  maxQueuePerTenant: number;
  batchWaitMs: number;
  prefixCacheBytes: number;
}

/** One generation as the scheduler takes it: tokens in, sampling resolved, adapter pinned. */
export interface GenerationJob {
  requestId: string;
  tenant: string;
  prompt: number[];
  params: SamplingParams;
  seed: number;
  /** Released by the scheduler when the sequence ends. */
  adapter: Lease<ReadyAdapter> | null;
  /**
   * Prefix-cache scope: entries are the tenant's own unless it opted in to sharing them with the
   * other tenants that did; a salt narrows either to the requests passing the same salt.
   */
  sharePrefixCache?: boolean | undefined;
  salt?: string | undefined;
  signal?: AbortSignal | undefined;
  onDelta?: ((text: string) => void) | undefined;
}

export interface GenerationOutcome {
  tokens: number[];
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
}

export class QueueFullError extends Error {
  override name = 'QueueFullError';
  constructor(
    message: string,
    readonly retryAfterS: number,
  ) {
    super(message);
  }
}

export class RequestTooLargeError extends Error {
  override name = 'RequestTooLargeError';
}

interface Seq {
  job: GenerationJob;
  rng: Rng;
  watcher: StopWatcher;
  /** Token ids to text a token at a time: only the new tail is decoded, open characters held back. */
  decoder: IncrementalDecoder;
  tokens: number[];
  /** The text of every token so far, but for a character still open at the end. */
  text: string;
  /** Prompt + max_tokens: what this sequence's caches may grow to. */
  reserve: number;
  /** The sampled token not yet in the caches (fed by the next decode step). */
  pending: number;
  enqueuedAt: number;
  firstAt: number | undefined;
  done: boolean;
  resolve: (o: GenerationOutcome) => void;
  reject: (e: unknown) => void;
  /** Between prefill and joining the batch: the prompt's backbone results and side cache. */
  acts?: PromptActs | undefined;
  sideRow?: RowKv | undefined;
  onAbort?: (() => void) | undefined;
}

/**
 * Adapter rows of one side-net shape in the running batch, whatever their adapters: one side
 * pass per step, one packed side cache, both in the group's own row order.
 */
interface Group {
  side: SideModel;
  rows: Seq[];
  kv: PackedKv;
  /** The rows' weights stacked per row when they run several adapters; none when they run one. */
  weights: RowWeights | undefined;
}

const adapterOf = (s: Seq): ReadyAdapter | undefined => s.job.adapter?.value;

/** The session and weight feeds for rows of one side shape: one adapter's own, or stacked per row. */
function sidePass(
  side: SideModel,
  rows: readonly ReadyAdapter[],
  stacked: () => Record<string, Tensor>,
): { session: Session; weights: Record<string, Tensor> } {
  const first = rows[0]!;
  return rows.every((a) => a.key === first.key)
    ? { session: side.step, weights: first.tensors }
    : { session: side.stacked, weights: stacked() };
}

/**
 * Continuous batching across tenants. Each turn: admit waiting sequences (round-robin over
 * tenants, under the row and token caps), prefill them together (prompts already in the prefix
 * cache skip the backbone; identical prompts run once), then one decode step for the whole
 * batch: ONE backbone step for every row, then ONE side-net pass per side shape over all rows of
 * that shape whatever their adapters (rows of several adapters on weights stacked per row), then
 * sampling. Sequences leave as they finish or their client goes away; the packed caches are
 * rebuilt only when membership changes, and the stacked weights then copy only the rows that
 * joined or moved: a decode step copies no weights.
 */
export class Scheduler {
  private readonly queues = new Map<string, Seq[]>();
  private queued = 0;
  private running: Seq[] = [];
  private bbKv: PackedKv | undefined;
  private groups = new Map<string, Group>();
  private wake: (() => void) | undefined;
  private closed = false;
  private readonly prefix: PrefixCache;
  private readonly recentTokens: { at: number; n: number }[] = [];
  readonly loopDone: Promise<void>;

  constructor(
    private readonly model: ServingModel,
    private readonly gate: ComputeGate,
    private readonly metrics: WorkerMetrics,
    readonly options: SchedulerOptions,
  ) {
    this.prefix = new PrefixCache(options.prefixCacheBytes, model.kv);
    this.loopDone = this.loop();
  }

  get queueDepth(): number {
    return this.queued;
  }

  get batchSize(): number {
    return this.running.length;
  }

  /** Queues a generation; throws QueueFullError / RequestTooLargeError at once when it cannot. */
  submit(job: GenerationJob): Promise<GenerationOutcome> {
    const o = this.options;
    const reserve = job.prompt.length + job.params.maxTokens;
    const maxPos = this.model.config.maxPositions;
    if (job.prompt.length === 0) throw new RangeError('prompt: no tokens to start from');
    if (reserve > o.maxBatchTokens)
      throw new RequestTooLargeError(
        `prompt (${job.prompt.length} tokens) + max_tokens (${job.params.maxTokens}) = ${reserve} is over this worker's batch cap of ${o.maxBatchTokens} tokens`,
      );
    if (reserve > maxPos)
      throw new RequestTooLargeError(
        `prompt (${job.prompt.length} tokens) + max_tokens (${job.params.maxTokens}) = ${reserve} is over the backbone's ${maxPos} positions`,
      );
    const tenantQueue = this.queues.get(job.tenant) ?? [];
    if (this.queued >= o.maxQueue || tenantQueue.length >= o.maxQueuePerTenant) {
      this.metrics.rejected.inc(1, { kind: 'generate' });
      const which =
        this.queued >= o.maxQueue
          ? `${this.queued} requests are waiting`
          : `tenant ${job.tenant} has ${tenantQueue.length} requests waiting`;
      throw new QueueFullError(
        `worker overloaded: ${which}; retry later`,
        Math.max(1, Math.ceil(this.queued / Math.max(1, o.maxBatch))),
      );
    }
    return new Promise<GenerationOutcome>((resolve, reject) => {
      const seq: Seq = {
        job,
        rng: new Rng(job.seed),
        watcher: new StopWatcher(job.params.stop),
        decoder: this.model.tokenizer.createDecoder({ skipSpecialTokens: true }),
        tokens: [],
        text: '',
        reserve,
        pending: -1,
        enqueuedAt: performance.now(),
        firstAt: undefined,
        done: false,
        resolve,
        reject,
      };
      if (job.signal?.aborted) {
        this.finish(seq, 'cancelled');
        return;
      }
      seq.onAbort = () => {
        const q = this.queues.get(job.tenant);
        const at = q?.indexOf(seq) ?? -1;
        if (at >= 0) {
          q!.splice(at, 1);
          this.queued--;
          if (q!.length === 0) this.queues.delete(job.tenant);
          this.finish(seq, 'cancelled');
        }
        // A running sequence is dropped at the start of the next turn.
      };
      job.signal?.addEventListener('abort', seq.onAbort, { once: true });
      tenantQueue.push(seq);
      this.queues.set(job.tenant, tenantQueue);
      this.queued++;
      this.wake?.();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    await this.loopDone;
    const err = new Error('the worker is shutting down');
    for (const q of this.queues.values()) for (const s of q) this.fail(s, err);
    for (const s of this.running) this.fail(s, err);
  }

  /** Generated tokens per second over the last 10 seconds. */
  tokensPerSecond(): number {
    const now = performance.now();
    while (this.recentTokens.length && now - this.recentTokens[0]!.at > 10_000) this.recentTokens.shift();
    if (this.recentTokens.length === 0) return 0;
    const span = Math.max(1000, now - this.recentTokens[0]!.at);
    return (this.recentTokens.reduce((n, r) => n + r.n, 0) * 1000) / span;
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      if (this.running.length === 0 && this.queued === 0) {
        await new Promise<void>((r) => {
          this.wake = r;
        });
        this.wake = undefined;
        if (this.options.batchWaitMs > 0) await new Promise((r) => setTimeout(r, this.options.batchWaitMs));
        continue;
      }
      const release = await this.gate.acquire('serve');
      try {
        await this.turn();
      } catch (e) {
        for (const s of this.running) this.fail(s, e);
        this.running = [];
        this.groups = new Map();
        this.bbKv = undefined;
      } finally {
        release();
      }
      this.publishGauges();
      await new Promise((r) => setImmediate(r));
    }
  }

  private async turn(): Promise<void> {
    const admitted = this.admit();
    let newcomers: Seq[] = [];
    if (admitted.length) {
      try {
        newcomers = await this.prefill(admitted);
      } catch (e) {
        for (const s of admitted) this.fail(s, e);
      }
    }
    for (const s of this.running) if (!s.done && s.job.signal?.aborted) this.finish(s, 'cancelled');
    const survivors = this.running.filter((s) => !s.done);
    if (survivors.length !== this.running.length || newcomers.length) this.repack(survivors, newcomers);
    if (this.running.length) await this.decode();
  }

  /** Round-robin over tenants with waiting requests, until the row or token cap would be passed. */
  private admit(): Seq[] {
    const out: Seq[] = [];
    const live = this.running.filter((s) => !s.done);
    let rows = live.length;
    let tokens = live.reduce((n, s) => n + s.reserve, 0);
    while (this.queues.size) {
      const [tenant, q] = this.queues.entries().next().value as [string, Seq[]];
      const s = q[0]!;
      if (rows + 1 > this.options.maxBatch || tokens + s.reserve > this.options.maxBatchTokens) break;
      q.shift();
      this.queued--;
      this.queues.delete(tenant);
      if (q.length) this.queues.set(tenant, q); // to the back of the rotation
      out.push(s);
      rows++;
      tokens += s.reserve;
    }
    return out;
  }

  /**
   * Prompts to first tokens; returns the sequences that go on decoding. Each prompt takes what
   * the prefix cache has in its scope: all of it (no backbone), or its longest run of cached
   * blocks (the backbone runs from there). Identical prompts of one scope run once.
   */
  private async prefill(seqs: Seq[]): Promise<Seq[]> {
    const misses = new Map<string, { keys: PromptKeys; cached: PrefillRow['cached']; seqs: Seq[] }>();
    for (const s of seqs) {
      const keys = PrefixCache.keys(s.job.prompt, {
        tenant: s.job.tenant,
        shared: s.job.sharePrefixCache,
        salt: s.job.salt,
      });
      this.metrics.promptTokens.inc(s.job.prompt.length);
      const group = misses.get(keys.whole);
      if (group) {
        group.seqs.push(s);
        continue;
      }
      const found = this.prefix.lookup(keys, s.job.prompt.length);
      if (found.tokens > 0) this.metrics.prefixHitTokens.inc(found.tokens);
      if (found.kind === 'whole') {
        s.acts = found.acts;
        this.metrics.prefixHits.inc();
        continue;
      }
      const cached = found.kind === 'prefix' ? { acts: found.acts, tokens: found.tokens } : undefined;
      misses.set(keys.whole, { keys, cached, seqs: [s] });
    }
    if (misses.size) {
      const unique = [...misses.values()];
      const acts = await backbonePrefill(
        this.model,
        unique.map((u) => ({ prompt: u.seqs[0]!.job.prompt, cached: u.cached })),
      );
      unique.forEach((u, i) => {
        this.prefix.store(u.keys, acts[i]!);
        this.metrics.prefixMisses.inc(u.seqs.length);
        for (const s of u.seqs) s.acts = acts[i]!;
      });
    }
    const logits = new Map<Seq, Float32Array>();
    const byShape = new Map<string, Seq[]>();
    for (const s of seqs) {
      const a = adapterOf(s);
      if (!a) logits.set(s, s.acts!.lastLogits);
      else byShape.set(a.side.key, [...(byShape.get(a.side.key) ?? []), s]);
    }
    for (const group of byShape.values()) {
      const rows = await this.sidePrefill(group);
      for (const [i, s] of group.entries()) logits.set(s, rows[i]!);
    }
    for (const s of seqs) this.accept(s, sampleToken(logits.get(s)!, s.job.params, s.rng));
    return seqs.filter((s) => !s.done);
  }

  /** The side net over new rows' prompts (from their backbone results), all adapters of one shape in one pass. */
  private async sidePrefill(seqs: Seq[]): Promise<Float32Array[]> {
    const side = adapterOf(seqs[0]!)!.side;
    const { shape, kv } = side;
    const adapters = seqs.map((s) => adapterOf(s)!);
    const pass = sidePass(side, adapters, () => {
      this.model.counters.adapterRowCopies += adapters.length;
      return stackRows(shape, adapters);
    });
    const d = this.model.config.hiddenSize;
    const lens = seqs.map((s) => s.acts!.bb.len);
    const T = Math.max(...lens);
    const B = seqs.length;
    const padded = (get: (a: PromptActs) => Float32Array) => {
      const out = new Float32Array(B * T * d);
      for (const [i, s] of seqs.entries()) out.set(get(s.acts!), (i * T + T - lens[i]!) * d);
      return f32(out, [B, T, d]); // (B, T, d)
    };
    const feeds: Record<string, Tensor> = {
      ...pass.weights,
      [SIDE_IO.finalHidden]: padded((a) => a.finalHidden),
      [SIDE_IO.lmHead]: this.model.lmHead,
      [SIDE_IO.mask]: i64(
        lens.flatMap((n) => maskRow(T, n, 0)),
        [B, T],
      ),
      [SIDE_IO.positions]: i64(
        lens.flatMap((n) => [...new Array<number>(T - n).fill(0), ...Array.from({ length: n }, (_, t) => t)]),
        [B, T],
      ),
    };
    for (const t of shape.taps) feeds[SIDE_IO.tap(t)] = padded((a) => a.taps.get(t)!);
    for (let j = 0; j < kv.layers; j++) {
      feeds[SIDE_IO.pastKey(j)] = zeros('float32', [B, kv.heads, 0, kv.headDim]);
      feeds[SIDE_IO.pastValue(j)] = zeros('float32', [B, kv.heads, 0, kv.headDim]);
    }
    const out = await this.model.runSide(pass.session, feeds);
    const present = PackedKv.fromTensors(
      kv,
      lens,
      shape.layers.map((_, j) => out[SIDE_IO.presentKey(j)]!),
      shape.layers.map((_, j) => out[SIDE_IO.presentValue(j)]!),
    );
    seqs.forEach((s, i) => {
      s.sideRow = present.row(i);
    });
    return lastRows(out[SIDE_IO.logits]!).map((r) => r.slice());
  }

  /** New membership: survivors keep their order, newcomers go after; caches repacked to fit. */
  private repack(survivors: Seq[], newcomers: Seq[]): void {
    const oldIndex = new Map(this.running.map((s, b) => [s, b]));
    const old = this.bbKv;
    const rows = [...survivors.map((s) => old!.row(oldIndex.get(s)!)), ...newcomers.map((s) => s.acts!.bb)];
    this.running = [...survivors, ...newcomers];
    this.bbKv = this.running.length ? PackedKv.pack(this.model.kv, rows) : undefined;

    const members = new Map<string, Seq[]>();
    for (const s of this.running) {
      const a = adapterOf(s);
      if (a) members.set(a.side.key, [...(members.get(a.side.key) ?? []), s]);
    }
    const groups = new Map<string, Group>();
    const copied = (n: number) => {
      this.model.counters.adapterRowCopies += n;
    };
    for (const [key, list] of members) {
      const prev = this.groups.get(key);
      const before = prev?.rows ?? [];
      const had = new Set(before);
      const added = list.filter((s) => !had.has(s));
      if (prev && added.length === 0 && before.length === list.length) {
        groups.set(key, prev);
        continue;
      }
      const member = new Set(list);
      const plan = swapRemovePlan(before, (s) => member.has(s), added);
      const at = new Map(before.map((s, i) => [s, i]));
      const sideRows = plan.order.map((s) => (at.has(s) ? prev!.kv.row(at.get(s)!) : s.sideRow!));
      const side = adapterOf(plan.order[0]!)!.side;
      const adapters = plan.order.map((s) => adapterOf(s)!);
      let weights: RowWeights | undefined;
      if (adapters.some((a) => a.key !== adapters[0]!.key)) {
        weights = prev?.weights;
        if (weights)
          weights.apply(
            plan,
            added.map((s) => adapterOf(s)!),
          );
        else weights = new RowWeights(side.shape, adapters, copied);
      }
      groups.set(key, { side, rows: plan.order, kv: PackedKv.pack(side.kv, sideRows), weights });
    }
    this.groups = groups;
    for (const s of newcomers) {
      s.acts = undefined;
      s.sideRow = undefined;
    }
  }

  /** One token for every running row: one backbone step, one side pass per side shape, sampling. */
  private async decode(): Promise<void> {
    const rows = this.running;
    const kv = this.bbKv!;
    const S = kv.S;
    const past = kv.tensors();
    const { outputs, present } = await this.model.run(
      {
        ids: rows.map((s) => [s.pending]),
        mask: rows.map((_, b) => maskRow(S, kv.lens[b]!, 1)),
        positions: rows.map((_, b) => [kv.lens[b]!]),
        past,
      },
      'decode',
    );
    this.bbKv = PackedKv.fromTensors(
      this.model.kv,
      kv.lens.map((n) => n + 1),
      present.keys,
      present.values,
    );
    const logits: Float32Array[] = lastRows(outputs[IO.logits]!);
    const index = new Map(rows.map((s, b) => [s, b]));
    for (const g of this.groups.values()) {
      const idx = g.rows.map((s) => index.get(s)!);
      const { shape, kv: spec } = g.side;
      const side = g.kv.tensors();
      const session = g.weights ? g.side.stacked : g.side.step;
      const feeds: Record<string, Tensor> = {
        ...(g.weights ? g.weights.tensors : adapterOf(g.rows[0]!)!.tensors),
        [SIDE_IO.finalHidden]: selectRows(outputs[IO.finalHidden]!, idx),
        [SIDE_IO.lmHead]: this.model.lmHead,
        [SIDE_IO.mask]: i64(
          idx.flatMap((_, i) => maskRow(g.kv.S, g.kv.lens[i]!, 1)),
          [idx.length, g.kv.S + 1],
        ),
        [SIDE_IO.positions]: i64(
          idx.map((_, i) => g.kv.lens[i]!),
          [idx.length, 1],
        ),
      };
      for (const t of shape.taps) feeds[SIDE_IO.tap(t)] = selectRows(outputs[IO.tap(t)]!, idx);
      for (let j = 0; j < spec.layers; j++) {
        feeds[SIDE_IO.pastKey(j)] = side.keys[j]!;
        feeds[SIDE_IO.pastValue(j)] = side.values[j]!;
      }
      const out = await this.model.runSide(session, feeds);
      g.kv = PackedKv.fromTensors(
        spec,
        g.kv.lens.map((n) => n + 1),
        shape.layers.map((_, j) => out[SIDE_IO.presentKey(j)]!),
        shape.layers.map((_, j) => out[SIDE_IO.presentValue(j)]!),
      );
      lastRows(out[SIDE_IO.logits]!).forEach((row, i) => {
        logits[idx[i]!] = row;
      });
    }
    for (const [b, s] of rows.entries()) this.accept(s, sampleToken(logits[b]!, s.job.params, s.rng));
    this.recentTokens.push({ at: performance.now(), n: rows.length });
  }

  private accept(s: Seq, token: number): void {
    if (s.firstAt === undefined) {
      s.firstAt = performance.now();
      this.metrics.ttft.observe((s.firstAt - s.enqueuedAt) / 1000);
    }
    const p = s.job.params;
    if (p.stopTokenIds.includes(token)) {
      this.finish(s, 'eos');
      return;
    }
    s.tokens.push(token);
    this.metrics.completionTokens.inc();
    s.text += s.decoder.push(token);
    const delta = s.watcher.push(s.text);
    if (delta) s.job.onDelta?.(delta);
    if (s.watcher.stopped) this.finish(s, 'stop');
    else if (s.tokens.length >= p.maxTokens) this.finish(s, 'length');
    else s.pending = token;
  }

  private finish(s: Seq, reason: FinishReason): void {
    if (s.done) return;
    s.done = true;
    s.text += s.decoder.flush();
    const tail = s.watcher.flush(s.text);
    if (tail) s.job.onDelta?.(tail);
    const text = s.watcher.stopped ? s.text.slice(0, s.watcher.emittedLength) : s.text;
    this.cleanup(s);
    this.metrics.requests.inc(1, { kind: 'generate', outcome: reason });
    s.resolve({ tokens: s.tokens, text, finishReason: reason, promptTokens: s.job.prompt.length });
  }

  private fail(s: Seq, e: unknown): void {
    if (s.done) return;
    s.done = true;
    this.cleanup(s);
    this.metrics.requests.inc(1, { kind: 'generate', outcome: 'error' });
    s.reject(e);
  }

  private cleanup(s: Seq): void {
    if (s.onAbort) s.job.signal?.removeEventListener('abort', s.onAbort);
    s.job.adapter?.release();
  }

  private publishGauges(): void {
    const m = this.metrics;
    m.queueDepth.set(this.queued);
    m.batchSize.set(this.running.length);
    m.batchTokens.set(this.running.reduce((n, s) => n + s.reserve, 0));
    m.batchGroups.set(this.groups.size);
    m.tokensPerS.set(this.tokensPerSecond());
  }
}
