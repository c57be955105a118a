/**
 * A small Prometheus registry: counters and gauges (optionally labelled), histograms with fixed
 * buckets, and gauges read at scrape time. `render()` is the text exposition format 0.0.4.
 */

type Labels = Record<string, string>;

interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  /**
   * Left out of the open exposition: what it counts tells one tenant about another's requests
   * (a prefix-cache hit says that someone sent the same prompt before).
   */
  private?: boolean;
}

export interface RenderOptions {
  /** Include the private families (for a caller that proved who it is). Default: left out. */
  includePrivate?: boolean;
}

const labelText = (labels: Labels) => {
  const parts = Object.entries(labels).map(
    ([k, v]) => `${k}="${v.replace(/["\\\n]/g, (c) => `\\${c === '\n' ? 'n' : c}`)}"`,
  );
  return parts.length ? `{${parts.join(',')}}` : '';
};

export class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly family: Family) {}

  inc(by = 1, labels: Labels = {}): void {
    const key = labelText(labels);
    const cur = this.values.get(key);
    if (cur) cur.value += by;
    else this.values.set(key, { labels, value: by });
  }

  set(value: number, labels: Labels = {}): void {
    this.values.set(labelText(labels), { labels, value });
  }

  get(labels: Labels = {}): number {
    return this.values.get(labelText(labels))?.value ?? 0;
  }

  lines(): string[] {
    if (this.values.size === 0) return [`${this.family.name} 0`];
    return [...this.values.values()].map((v) => `${this.family.name}${labelText(v.labels)} ${v.value}`);
  }
}

export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  private readonly recent: number[] = [];
  constructor(
    readonly family: Family,
    readonly buckets: readonly number[],
  ) {
    this.counts = new Array(buckets.length).fill(0);
  }

  observe(v: number): void {
    this.buckets.forEach((b, i) => {
      if (v <= b) this.counts[i]!++;
    });
    this.sum += v;
    this.count++;
    this.recent.push(v);
    if (this.recent.length > 1000) this.recent.shift();
  }

  /** A quantile of the last 1000 observations (for heartbeats and benchmarks, not for Prometheus). */
  quantile(q: number): number {
    if (this.recent.length === 0) return 0;
    const sorted = [...this.recent].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  }

  lines(): string[] {
    const n = this.family.name;
    return [
      ...this.buckets.map((b, i) => `${n}_bucket{le="${b}"} ${this.counts[i]}`),
      `${n}_bucket{le="+Inf"} ${this.count}`,
      `${n}_sum ${this.sum}`,
      `${n}_count ${this.count}`,
    ];
  }
}

export class Registry {
  private readonly families: { family: Family; lines: () => string[] }[] = [];

  counter(name: string, help: string, opts: { private?: boolean } = {}): Counter {
    const c = new Counter({ name, help, type: 'counter', ...opts });
    this.families.push({ family: c.family, lines: () => c.lines() });
    return c;
  }

  /** A gauge set by the code (labelled values allowed). */
  gauge(name: string, help: string): Counter {
    const c = new Counter({ name, help, type: 'gauge' });
    this.families.push({ family: c.family, lines: () => c.lines() });
    return c;
  }

  /** A gauge (or counter) whose value is read when scraped. */
  collect(name: string, help: string, type: 'counter' | 'gauge', read: () => number): void {
    this.families.push({ family: { name, help, type }, lines: () => [`${name} ${read()}`] });
  }

  histogram(name: string, help: string, buckets: readonly number[]): Histogram {
    const h = new Histogram({ name, help, type: 'histogram' }, buckets);
    this.families.push({ family: h.family, lines: () => h.lines() });
    return h;
  }

  render(options: RenderOptions = {}): string {
    const out: string[] = [];
    for (const { family, lines } of this.families) {
      if (family.private && !options.includePrivate) continue;
      out.push(`# HELP ${family.name} ${family.help}`, `# TYPE ${family.name} ${family.type}`, ...lines());
    }
    return `${out.join('\n')}\n`;
  }
}

/** Every metric the worker exposes, in one place so /metrics and the code agree on names. */
export function workerMetrics() {
  const r = new Registry();
  return {
    registry: r,
    requests: r.counter('ladder_requests_total', 'Requests finished, by kind and outcome'),
    rejected: r.counter('ladder_requests_rejected_total', 'Requests refused with 503 (queue full)'),
    promptTokens: r.counter('ladder_prompt_tokens_total', 'Prompt tokens prefilled'),
    completionTokens: r.counter('ladder_completion_tokens_total', 'Tokens generated'),
    prefixHits: r.counter(
      'ladder_prefix_cache_hits_total',
      'Prompts whose whole backbone prefill came from the prefix cache',
      { private: true },
    ),
    prefixHitTokens: r.counter(
      'ladder_prefix_cache_hit_tokens_total',
      'Prompt tokens whose backbone prefill came from the prefix cache (whole prompts and cached blocks)',
      { private: true },
    ),
    prefixMisses: r.counter(
      'ladder_prefix_cache_misses_total',
      'Prompts prefilled through the backbone (wholly or after cached blocks)',
      { private: true },
    ),
    queueDepth: r.gauge('ladder_queue_depth', 'Requests waiting to join the running batch'),
    batchSize: r.gauge('ladder_batch_size', 'Sequences in the running batch'),
    batchTokens: r.gauge('ladder_batch_tokens', 'Reserved tokens (prompt + max_tokens) of the running batch'),
    batchGroups: r.gauge(
      'ladder_batch_adapter_groups',
      'Side-net passes per decode step: one per side-net shape among the adapters of the batch',
    ),
    tokensPerS: r.gauge('ladder_tokens_per_second', 'Generated tokens per second over the last 10 s'),
    ttft: r.histogram(
      'ladder_time_to_first_token_seconds',
      'From arrival to the first generated token',
      [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    ),
    trainingSteps: r.counter('ladder_training_steps_total', 'Optimizer steps run by training jobs'),
    trainingTokens: r.counter('ladder_training_tokens_total', 'Tokens trained on (every epoch counted)'),
    trainingYields: r.counter(
      'ladder_training_yields_total',
      'Times a training job gave its compute turn to waiting requests in the middle of a step',
    ),
    jobs: r.gauge('ladder_training_jobs', 'Training jobs by status'),
  };
}
export type WorkerMetrics = ReturnType<typeof workerMetrics>;
