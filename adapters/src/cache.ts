import type { AdapterManifest } from '@ladder/schemas';
import { CacheFullError, InvalidArgumentError, isAdapterError, NotFoundError } from './errors.ts';
import { checkId, checkVersion } from './keys.ts';
import type { VerifiedAdapter } from './store.ts';

export interface AdapterRef {
  tenant: string;
  adapterId: string;
  version: number;
}

/**
 * Turns a verified adapter into what inference runs with (ORT tensors on the worker, typed
 * arrays here) and says how many bytes that holds. The cache is generic over it so that this
 * package, shared with the edge, never imports onnxruntime.
 */
export interface AdapterLoader<V> {
  load(adapter: VerifiedAdapter): Promise<{ value: V; bytes: number }> | { value: V; bytes: number };
  /** Frees a value the cache lets go of (eviction, invalidation, clear). */
  dispose?(value: V): void | Promise<void>;
}

export interface AdapterCacheOptions<V> {
  /** Resident bytes of ready values (as the loader reports them) never exceed this. */
  budgetBytes: number;
  /** Fetches and verifies an adapter, e.g. `(r) => store.forTenant(r.tenant).get(r.adapterId, r.version)`. */
  source: (ref: AdapterRef) => Promise<VerifiedAdapter>;
  loader: AdapterLoader<V>;
  /** A missing adapter is answered from memory this long, so a hot bad id does not hammer the store. */
  negativeTtlMs: number;
  maxNegativeEntries: number;
  /** Clock for the negative cache (tests pass a fake one). */
  now: () => number;
}

export const CACHE_DEFAULTS = {
  negativeTtlMs: 5_000,
  maxNegativeEntries: 10_000,
  now: () => performance.now(),
} satisfies Partial<AdapterCacheOptions<unknown>>;

export type AdapterCacheOptionsInput<V> = Partial<AdapterCacheOptions<V>> &
  Pick<AdapterCacheOptions<V>, 'budgetBytes' | 'source' | 'loader'>;

/** A pinned use of a cached adapter: the value stays resident until `release()`. */
export interface Lease<V> {
  readonly value: V;
  readonly manifest: AdapterManifest;
  release(): void;
}

export interface CacheStats {
  /** Acquires served by a resident value. */
  hits: number;
  /** Acquires that had to wait for a load (their own or one already in flight). */
  misses: number;
  /** Fetches from the source: misses minus those that joined a load in flight. */
  loads: number;
  loadFailures: number;
  negativeHits: number;
  evictions: number;
  bytes: number;
  entries: number;
  pinned: number;
  budgetBytes: number;
}

interface Entry<V> {
  key: string;
  value: V;
  manifest: AdapterManifest;
  bytes: number;
  pins: number;
}

interface Flight<V> {
  promise: Promise<Entry<V>>;
  waiters: number;
  stale: boolean;
}

/**
 * Ready adapters under a byte budget. LRU over unpinned entries (a Map keeps insertion order;
 * a hit re-inserts); pinned entries are never evicted, and when pins fill the budget a new
 * adapter is refused with CacheFullError rather than evicting one in use. Concurrent acquires of
 * a cold adapter share one load (single-flight); its waiters are pinned at admission, before
 * any of them resumes, so nothing can evict the entry in between.
 */
export class AdapterCache<V> {
  readonly options: AdapterCacheOptions<V>;
  private readonly entries = new Map<string, Entry<V>>();
  /** Invalidated entries still pinned: out of lookups, still counted in bytes. */
  private readonly draining = new Set<Entry<V>>();
  private readonly flights = new Map<string, Flight<V>>();
  private readonly negative = new Map<string, number>();
  private counters = { hits: 0, misses: 0, loads: 0, loadFailures: 0, negativeHits: 0, evictions: 0 };
  private bytes = 0;

  constructor(opts: AdapterCacheOptionsInput<V>) {
    this.options = { ...CACHE_DEFAULTS, ...opts } satisfies AdapterCacheOptions<V>;
    if (!(this.options.budgetBytes > 0)) throw new InvalidArgumentError('cache budgetBytes must be > 0');
  }

  async acquire(ref: AdapterRef): Promise<Lease<V>> {
    const key = refKey(ref);
    const hit = this.entries.get(key);
    if (hit) {
      this.counters.hits++;
      this.entries.delete(key);
      this.entries.set(key, hit);
      hit.pins++;
      return this.lease(hit);
    }
    const until = this.negative.get(key);
    if (until !== undefined) {
      if (until > this.options.now()) {
        this.counters.negativeHits++;
        throw new NotFoundError(
          `adapter ${ref.adapterId} v${ref.version} of tenant ${ref.tenant} not found (cached)`,
        );
      }
      this.negative.delete(key);
    }
    this.counters.misses++;
    let flight = this.flights.get(key);
    if (flight) flight.waiters++;
    else {
      const f: Flight<V> = { waiters: 1, stale: false, promise: undefined as unknown as Promise<Entry<V>> };
      f.promise = this.load(key, ref, f);
      this.flights.set(key, f);
      flight = f;
    }
    return this.lease(await flight.promise);
  }

  /** Acquire, run `fn`, release, whatever `fn` does. */
  async use<R>(ref: AdapterRef, fn: (value: V, manifest: AdapterManifest) => Promise<R> | R): Promise<R> {
    const lease = await this.acquire(ref);
    try {
      return await fn(lease.value, lease.manifest);
    } finally {
      lease.release();
    }
  }

  /** Forget an adapter (deleted or replaced): freed now, or when its last lease is released. */
  invalidate(ref: AdapterRef): void {
    const key = refKey(ref);
    this.negative.delete(key);
    const flight = this.flights.get(key);
    if (flight) flight.stale = true;
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    if (entry.pins === 0) this.drop(entry);
    else this.draining.add(entry);
  }

  has(ref: AdapterRef): boolean {
    return this.entries.has(refKey(ref));
  }

  stats(): CacheStats {
    let pinned = this.draining.size;
    for (const e of this.entries.values()) if (e.pins > 0) pinned++;
    return {
      ...this.counters,
      bytes: this.bytes,
      entries: this.entries.size,
      pinned,
      budgetBytes: this.options.budgetBytes,
    };
  }

  private async load(key: string, ref: AdapterRef, flight: Flight<V>): Promise<Entry<V>> {
    try {
      this.counters.loads++;
      const adapter = await this.options.source(ref);
      const ready = await this.options.loader.load(adapter);
      if (!(Number.isFinite(ready.bytes) && ready.bytes >= 0)) {
        this.dispose(ready.value);
        throw new InvalidArgumentError(`loader reported ${ready.bytes} bytes for ${key}`);
      }
      if (!this.makeRoom(ready.bytes)) {
        this.dispose(ready.value);
        throw new CacheFullError(
          `adapter ${key} needs ${ready.bytes} bytes; the budget is ${this.options.budgetBytes} and ` +
            `${this.bytes} bytes are pinned by requests in progress`,
        );
      }
      // Pinned for every waiter now, synchronously with admission (see the class comment).
      const entry: Entry<V> = {
        key,
        value: ready.value,
        manifest: adapter.manifest,
        bytes: ready.bytes,
        pins: flight.waiters,
      };
      this.bytes += entry.bytes;
      if (flight.stale) this.draining.add(entry);
      else this.entries.set(key, entry);
      return entry;
    } catch (e) {
      this.counters.loadFailures++;
      if (isAdapterError(e, 'not_found')) this.rememberMissing(key);
      throw e;
    } finally {
      this.flights.delete(key);
    }
  }

  /** Evicts least-recently-used unpinned entries until `need` more bytes fit; false if they cannot. */
  private makeRoom(need: number): boolean {
    const budget = this.options.budgetBytes;
    if (need > budget) return false;
    for (const entry of this.entries.values()) {
      if (this.bytes + need <= budget) break;
      if (entry.pins > 0) continue;
      this.entries.delete(entry.key);
      this.counters.evictions++;
      this.drop(entry);
    }
    return this.bytes + need <= budget;
  }

  private lease(entry: Entry<V>): Lease<V> {
    let released = false;
    return {
      value: entry.value,
      manifest: entry.manifest,
      release: () => {
        if (released) return;
        released = true;
        entry.pins--;
        if (entry.pins === 0 && this.draining.delete(entry)) this.drop(entry);
      },
    };
  }

  private drop(entry: Entry<V>): void {
    this.bytes -= entry.bytes;
    this.dispose(entry.value);
  }

  private dispose(value: V): void {
    // A failing dispose must not break the request that triggered the eviction.
    void Promise.resolve()
      .then(() => this.options.loader.dispose?.(value))
      .catch(() => {});
  }

  private rememberMissing(key: string): void {
    if (this.negative.size >= this.options.maxNegativeEntries) {
      const oldest = this.negative.keys().next().value;
      if (oldest !== undefined) this.negative.delete(oldest);
    }
    this.negative.set(key, this.options.now() + this.options.negativeTtlMs);
  }
}

function refKey(ref: AdapterRef): string {
  return `${checkId('tenant', ref.tenant)}/${checkId('adapter id', ref.adapterId)}/v${checkVersion(ref.version)}`;
}
