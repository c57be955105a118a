import { createHash } from 'node:crypto';
import { concatRowKv, type KvSpec, type RowKv, sliceRowKv } from './kv.ts';

/**
 * What one prompt's backbone prefill produced, unpadded: its KV cache, the taps and final state
 * of every position (side nets of any adapter prefill from these), and the last position's
 * backbone logits. The backbone is frozen and shared, so this depends on the tokens only.
 */
export interface PromptActs {
  bb: RowKv;
  taps: Map<number, Float32Array>; // t -> (len, d)
  finalHidden: Float32Array; // (len, d)
  lastLogits: Float32Array; // (V)
}

/** PromptActs of a run of positions without the logits: one cached block, or a cached prefix. */
export type SpanActs = Omit<PromptActs, 'lastLogits'>;

/** Tokens per cached block: a prompt reuses the cache in whole blocks. */
export const PREFIX_BLOCK = 16;

/** Who may share an entry: one tenant (the default), or every tenant that opted in to sharing. */
export interface CacheScope {
  tenant: string;
  /** Opted in: entries are shared with every other tenant that opted in. */
  shared?: boolean | undefined;
  /** Narrows further: only requests passing the same salt share entries. */
  salt?: string | undefined;
}

/**
 * A prompt's cache keys: one per whole block, each the hash of the previous one and the block's
 * tokens (a block's key names its whole prefix), and one for the whole prompt (the blocks, then
 * the tokens after the last whole block). The chain starts from the scope, so a tenant's keys
 * never equal another tenant's unless both opted in to sharing.
 */
export interface PromptKeys {
  blocks: string[];
  whole: string;
  /** Tokens covered by the blocks (blocks.length * PREFIX_BLOCK). */
  blockTokens: number;
}

/** What the cache holds for a prompt: all of it, or its longest cached run of whole blocks. */
export type Lookup =
  | { kind: 'whole'; acts: PromptActs; tokens: number }
  | { kind: 'prefix'; acts: SpanActs; tokens: number }
  | { kind: 'none'; tokens: 0 };

interface Entry {
  span: SpanActs;
  /** Only on a whole-prompt entry (the positions after the last whole block). */
  lastLogits?: Float32Array;
  bytes: number;
}

export function spanBytes(a: SpanActs): number {
  let n = a.finalHidden.byteLength;
  for (const t of a.taps.values()) n += t.byteLength;
  for (const k of a.bb.keys) n += k.byteLength * 2;
  return n;
}

/** Positions [from, from + len) of a span (copies). */
export function sliceSpan(spec: KvSpec, a: SpanActs, from: number, len: number): SpanActs {
  const d = a.finalHidden.length / a.bb.len;
  const rows = (x: Float32Array) => x.slice(from * d, (from + len) * d);
  return {
    bb: sliceRowKv(spec, a.bb, from, len),
    taps: new Map([...a.taps].map(([t, x]) => [t, rows(x)])),
    finalHidden: rows(a.finalHidden),
  };
}

/** Spans one after another, as one (copies). */
export function concatSpans(spec: KvSpec, parts: readonly SpanActs[]): SpanActs {
  const cat = (xs: Float32Array[]) => {
    const out = new Float32Array(xs.reduce((n, x) => n + x.length, 0));
    let at = 0;
    for (const x of xs) {
      out.set(x, at);
      at += x.length;
    }
    return out;
  };
  const first = parts[0]!;
  return {
    bb: concatRowKv(
      spec,
      parts.map((p) => p.bb),
    ),
    taps: new Map([...first.taps.keys()].map((t) => [t, cat(parts.map((p) => p.taps.get(t)!))])),
    finalHidden: cat(parts.map((p) => p.finalHidden)),
  };
}

/**
 * Shared prefill by blocks: a prompt skips the backbone for its longest run of cached whole
 * blocks (a system prompt shared by many requests), or entirely when the whole prompt was seen.
 * Keys are salted by scope (see PromptKeys). LRU under a byte budget; a lookup refreshes a
 * prompt's entries from its last block to its first, so eviction takes a chain from its end and
 * a cached run always starts at the prompt's first token. Entries are immutable copies.
 */
export class PrefixCache {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  constructor(
    readonly budgetBytes: number,
    /** The backbone's cache geometry. */
    readonly kv: KvSpec,
  ) {}

  static keys(tokens: readonly number[], scope: CacheScope): PromptKeys {
    const root = createHash('sha256')
      .update(scope.shared ? 'shared\n' : `tenant:${scope.tenant}\n`)
      .update(scope.salt === undefined ? '' : `salt:${scope.salt}\n`)
      .digest();
    const blocks: string[] = [];
    let prev = root;
    const whole = Math.floor(tokens.length / PREFIX_BLOCK);
    for (let i = 0; i < whole; i++) {
      prev = createHash('sha256')
        .update(prev)
        .update(Int32Array.from(tokens.slice(i * PREFIX_BLOCK, (i + 1) * PREFIX_BLOCK)))
        .digest();
      blocks.push(prev.toString('hex'));
    }
    const end = createHash('sha256')
      .update(prev)
      .update('whole\n')
      .update(Int32Array.from(tokens.slice(whole * PREFIX_BLOCK)))
      .digest('hex');
    return { blocks, whole: end, blockTokens: whole * PREFIX_BLOCK };
  }

  /** The whole prompt, or the longest run of its blocks that leaves at least one token to run. */
  lookup(keys: PromptKeys, promptLength: number): Lookup {
    if (this.budgetBytes <= 0) return { kind: 'none', tokens: 0 };
    const spans: SpanActs[] = [];
    for (const k of keys.blocks) {
      const e = this.entries.get(k);
      if (!e) break;
      spans.push(e.span);
    }
    const tail = spans.length === keys.blocks.length ? this.entries.get(keys.whole) : undefined;
    if (tail) {
      this.touch([keys.whole, ...keys.blocks.slice().reverse()]);
      const acts = concatSpans(
        this.kv,
        [...spans, tail.span].filter((s) => s.bb.len > 0),
      );
      return { kind: 'whole', acts: { ...acts, lastLogits: tail.lastLogits! }, tokens: promptLength };
    }
    // The backbone must see at least the last token to give its logits.
    while (spans.length && spans.length * PREFIX_BLOCK >= promptLength) spans.pop();
    if (spans.length === 0) return { kind: 'none', tokens: 0 };
    this.touch(keys.blocks.slice(0, spans.length).reverse());
    return { kind: 'prefix', acts: concatSpans(this.kv, spans), tokens: spans.length * PREFIX_BLOCK };
  }

  /** Stores a prompt's blocks not yet held and its whole-prompt entry. */
  store(keys: PromptKeys, acts: PromptActs): void {
    if (this.budgetBytes <= 0) return;
    keys.blocks.forEach((k, i) => {
      if (!this.entries.has(k))
        this.put(k, { span: sliceSpan(this.kv, acts, i * PREFIX_BLOCK, PREFIX_BLOCK) });
    });
    if (!this.entries.has(keys.whole)) {
      const span = sliceSpan(this.kv, acts, keys.blockTokens, acts.bb.len - keys.blockTokens);
      this.put(keys.whole, { span, lastLogits: acts.lastLogits.slice() });
    }
    this.touch([keys.whole, ...keys.blocks.slice().reverse()]);
  }

  get size(): { entries: number; bytes: number } {
    return { entries: this.entries.size, bytes: this.bytes };
  }

  private put(key: string, e: Omit<Entry, 'bytes'>): void {
    const bytes = spanBytes(e.span) + (e.lastLogits?.byteLength ?? 0);
    if (bytes > this.budgetBytes) return;
    for (const [k, old] of this.entries) {
      if (this.bytes + bytes <= this.budgetBytes) break;
      this.entries.delete(k);
      this.bytes -= old.bytes;
    }
    this.entries.set(key, { ...e, bytes });
    this.bytes += bytes;
  }

  /** Most recent last: the keys given, in order. */
  private touch(keys: readonly string[]): void {
    for (const k of keys) {
      const e = this.entries.get(k);
      if (!e) continue;
      this.entries.delete(k);
      this.entries.set(k, e);
    }
  }
}
