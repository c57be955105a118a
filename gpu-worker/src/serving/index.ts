import type { AdapterCache, AdapterStore } from '@ladder/adapters';
import type { WorkerConfig } from '../config.ts';
import { openAdapterStore } from '../store.ts';
import { createAdapterCache, type ReadyAdapter } from './adapters.ts';
import type { ComputeGate } from './gate.ts';
import type { WorkerMetrics } from './metrics.ts';
import { ServingModel } from './model.ts';
import { Scheduler } from './scheduler.ts';

export { acquireAdapter, createAdapterCache, type ReadyAdapter } from './adapters.ts';
export { ComputeGate, TrainingTurns } from './gate.ts';
export { PackedKv } from './kv.ts';
export { type WorkerMetrics, workerMetrics } from './metrics.ts';
export { ServingModel } from './model.ts';
export { encodePrompt, generationJob, scoreWithAdapters } from './requests.ts';
export {
  type GenerationJob,
  type GenerationOutcome,
  QueueFullError,
  RequestTooLargeError,
  Scheduler,
} from './scheduler.ts';

/** Everything that serves requests over one backbone. */
export interface Serving {
  model: ServingModel;
  store: AdapterStore;
  cache: AdapterCache<ReadyAdapter>;
  scheduler: Scheduler;
  gate: ComputeGate;
  /** `tenant/adapter/vN` of every adapter in memory. */
  loadedAdapters(): string[];
}

/** Opens the backbone (building it on first use) and wires the store, cache and scheduler to it. */
export async function openServing(
  config: WorkerConfig,
  metrics: WorkerMetrics,
  gate: ComputeGate,
): Promise<Serving> {
  if (!config.LADDER_BACKBONE_DIR) throw new Error('LADDER_BACKBONE_DIR is not set: nothing to serve');
  const model = await ServingModel.open({
    backboneDir: config.LADDER_BACKBONE_DIR,
    cacheDir: config.LADDER_CACHE_DIR,
    ...(config.LADDER_BACKBONE_NAME ? { name: config.LADDER_BACKBONE_NAME } : {}),
    session: { provider: config.LADDER_EXECUTION_PROVIDER, intraOpThreads: config.LADDER_INTRA_OP_THREADS },
  });
  const store = openAdapterStore(config.LADDER_DATA_DIR, model.fingerprint);
  const loaded = new Set<string>();
  const cache = createAdapterCache({
    model,
    store,
    loaded,
    budgetBytes: config.LADDER_ADAPTER_CACHE_MB * 1024 * 1024,
  });
  const scheduler = new Scheduler(model, gate, metrics, {
    maxBatch: config.LADDER_MAX_BATCH,
    maxBatchTokens: config.LADDER_MAX_BATCH_TOKENS,
    maxQueue: config.LADDER_MAX_QUEUE,
    maxQueuePerTenant: config.LADDER_MAX_QUEUE_PER_TENANT,
    batchWaitMs: config.LADDER_BATCH_WAIT_MS,
    prefixCacheBytes: config.LADDER_PREFIX_CACHE_MB * 1024 * 1024,
  });
  const r = metrics.registry;
  const stat = (k: keyof ReturnType<AdapterCache<ReadyAdapter>['stats']>) => () => cache.stats()[k];
  r.collect('ladder_adapter_cache_hits_total', 'Adapter lookups served from memory', 'counter', stat('hits'));
  r.collect(
    'ladder_adapter_cache_misses_total',
    'Adapter lookups that loaded from the store',
    'counter',
    stat('misses'),
  );
  r.collect(
    'ladder_adapter_cache_evictions_total',
    'Adapters evicted for the byte budget',
    'counter',
    stat('evictions'),
  );
  r.collect(
    'ladder_adapter_cache_load_failures_total',
    'Adapter loads refused (missing, corrupt, mismatched)',
    'counter',
    stat('loadFailures'),
  );
  r.collect('ladder_adapter_cache_bytes', 'Bytes of ready adapters in memory', 'gauge', stat('bytes'));
  r.collect('ladder_adapter_cache_entries', 'Adapters in memory', 'gauge', stat('entries'));
  const c = model.counters;
  r.collect(
    'ladder_backbone_runs_total',
    'Backbone session runs (prefill, decode, score)',
    'counter',
    () => c.backboneRuns,
  );
  r.collect(
    'ladder_backbone_decode_steps_total',
    'Decode steps: one backbone run for the whole batch',
    'counter',
    () => c.decodeSteps,
  );
  r.collect('ladder_backbone_prefill_runs_total', 'Prefill backbone runs', 'counter', () => c.prefillRuns);
  r.collect('ladder_backbone_score_runs_total', 'Score backbone runs', 'counter', () => c.scoreRuns);
  r.collect(
    'ladder_side_passes_total',
    'Side-net session runs: one per side shape per decode step, prefill or score',
    'counter',
    () => c.sidePasses,
  );
  r.collect(
    'ladder_adapter_row_copies_total',
    'Adapter weight rows copied into stacked side-net weights (rows joining or moving, never per step)',
    'counter',
    () => c.adapterRowCopies,
  );
  r.collect(
    'ladder_backbone_rows_total',
    'Sequences summed over backbone runs',
    'counter',
    () => c.backboneRows,
  );
  return { model, store, cache, scheduler, gate, loadedAdapters: () => [...loaded].sort() };
}
