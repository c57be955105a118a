import { createHash } from 'node:crypto';
import type { RowKv } from './kv.ts';

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

export function actsBytes(a: PromptActs): number {
  let n = a.finalHidden.byteLength + a.lastLogits.byteLength;
  for (const t of a.taps.values()) n += t.byteLength;
  for (const k of a.bb.keys) n += k.byteLength * 2;
  return n;
}

/**
 * Shared prefill: prompts seen before skip the backbone. Keyed by a hash of the token ids and an
 * optional salt; a tenant that passes its own salt only ever matches its own entries. LRU under
 * a byte budget; entries are immutable, so handing one to several sequences is safe.
 */
export class PrefixCache {
  private readonly entries = new Map<string, { acts: PromptActs; bytes: number }>();
  private bytes = 0;

  constructor(readonly budgetBytes: number) {}

  static key(tokens: readonly number[], salt: string | undefined): string {
    return createHash('sha256')
      .update(salt === undefined ? 'shared\n' : `salt:${salt}\n`)
      .update(Int32Array.from(tokens))
      .digest('hex');
  }

  get(key: string): PromptActs | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    this.entries.delete(key);
    this.entries.set(key, e);
    return e.acts;
  }

  put(key: string, acts: PromptActs): void {
    if (this.budgetBytes <= 0 || this.entries.has(key)) return;
    const bytes = actsBytes(acts);
    if (bytes > this.budgetBytes) return;
    for (const [k, e] of this.entries) {
      if (this.bytes + bytes <= this.budgetBytes) break;
      this.entries.delete(k);
      this.bytes -= e.bytes;
    }
    this.entries.set(key, { acts, bytes });
    this.bytes += bytes;
  }

  get size(): { entries: number; bytes: number } {
    return { entries: this.entries.size, bytes: this.bytes };
  }
}
