import { GraphError, type Value } from '../builder.ts';
import { dimProduct } from '../dims.ts';
import { div, mul } from '../ops/arith.ts';
import { bitwiseXor, mod, range } from '../ops/integer.ts';
import { reshapeAs, sizeOf } from '../ops/shape.ts';
import { less, where } from '../ops/unary.ts';

export interface DropoutOptions {
  name: string;
}

const TWO_32 = 2 ** 32;

/**
 * Inverted dropout (https://jmlr.org/papers/v15/srivastava14a.html): each element is kept with
 * probability 1 - p and scaled by 1 / (1 - p), so the expectation is x and inference needs no
 * rescale. p == 0 emits nothing.
 *
 * The mask is counter-based, as Random123 / JAX's threefry
 * (https://www.thesalmons.org/john/random123/papers/random123sc11.pdf): element i's draw is a
 * pure function hash(hash(i) ^ key(seed)), so no RNG state lives in the graph, the same seed
 * replays the same mask (recomputation, resume) and a new seed draws a new one. Seeds are taken
 * modulo 2^32.
 *
 *   Range(0, size(x)) ─ hash ─ Xor key ─ hash ─ u32 (shape of x) ─ Less threshold ─ Where 0 : 1/(1-p) ─ Mul x
 *   seed () ─ Mod 2^32 ─ hash ─ key
 */
export function dropout(x: Value, p: number, seed: Value, opts: Partial<DropoutOptions> = {}): Value {
  const o = { name: 'dropout', ...opts } satisfies DropoutOptions;
  if (!(p >= 0 && p < 1)) throw new GraphError(`dropout: p must be in [0, 1), got ${p}`);
  if (seed.dtype !== 'int64' || seed.rank !== 0) {
    throw new GraphError(`dropout: seed ${seed} must be an int64 scalar`);
  }
  if (p === 0) return x;
  const g = x.graph;
  return g.scope(o.name, () => {
    const i64 = (n: number) => g.scalar(n, 'int64');
    const key = hash32(mod(seed, i64(TWO_32))); // ()
    const count = range(i64(0), sizeOf(x), i64(1), dimProduct(x.shape)); // (numel)
    const draws = reshapeAs(hash32(bitwiseXor(hash32(count), key)), x); // shape of x, in [0, 2^32)
    const dropped = less(draws, i64(Math.round(p * TWO_32)));
    const keepScale = where(dropped, g.scalar(0, x.dtype), g.scalar(1 / (1 - p), x.dtype));
    return mul(x, keepScale, 'Apply');
  });
}

/**
 * A 32-bit integer hash (Thomas Mueller's, https://stackoverflow.com/a/12996028): two rounds of
 * xorshift-16 and multiply by 0x45d9f3b, then a final xorshift. Values stay in [0, 2^32) as int64,
 * and every product is below 2^59, so nothing overflows; each step is a bijection of [0, 2^32).
 */
function hash32(x: Value): Value {
  const g = x.graph;
  const i64 = (n: number) => g.scalar(n, 'int64');
  const xorShift = (v: Value) => bitwiseXor(v, div(v, i64(2 ** 16))); // v ^ (v >> 16)
  let h = x;
  for (let round = 0; round < 2; round++) h = mod(mul(xorShift(h), i64(0x45d9f3b)), i64(TWO_32));
  return xorShift(h);
}
