/**
 * Token ids of one row of logits in descending logit order (ties: lower id first), ranked only as
 * deep as asked. `ensure(n)` makes ranks [0, n) final: a quickselect moves the best n - sorted of
 * the unranked ids to the front, then only those are sorted. Asking for a prefix that doubles each
 * time costs O(V) per round plus the sort of what was asked for, against O(V log V) for sorting
 * the whole vocabulary.
 *
 *   order:  | ranked, final (sorted) | best of the rest (after ensure) | the rest, unordered |
 *           0                   sorted                                n                    V
 */
export class RankedLogits {
  /** Every id, built on the first ensure that goes past what a heap pass gave (rarely needed). */
  private order: Int32Array | undefined;
  /** The ranked prefix while `order` is not built. */
  private head: Int32Array = new Int32Array(0);
  private done = 0;

  constructor(private readonly logits: Float32Array) {}

  /** How many ranks are final. */
  get sorted(): number {
    return this.done;
  }

  get size(): number {
    return this.logits.length;
  }

  /** The id at rank i (i < sorted). */
  at(i: number): number {
    if (i >= this.done) throw new RangeError(`rank ${i} is not ranked yet (${this.done} are)`);
    return (this.order ?? this.head)[i]!;
  }

  /** Makes ranks [0, n) final (n is capped at the vocabulary). */
  ensure(n: number): void {
    const V = this.logits.length;
    const to = Math.min(Math.max(0, Math.floor(n)), V);
    if (to <= this.done) return;
    const better = this.better;
    if (this.done === 0 && to <= HEAP_MAX && to < V) {
      // First round, a short prefix: one pass with a bounded heap, one compare for most ids.
      this.head = topByHeap(this.logits, to, better);
      this.done = to;
      return;
    }
    const order = this.fullOrder();
    if (to < V) selectBest(order, this.done, V, to, better);
    order.subarray(this.done, to).sort((a, b) => (better(a, b) ? -1 : 1));
    this.done = to;
  }

  /** The ranked head first, then every other id. */
  private fullOrder(): Int32Array {
    if (this.order) return this.order;
    const V = this.logits.length;
    const order = new Int32Array(V);
    order.set(this.head);
    const taken = new Uint8Array(V);
    for (const id of this.head) taken[id] = 1;
    let at = this.head.length;
    for (let i = 0; i < V; i++) if (!taken[i]) order[at++] = i;
    this.order = order;
    return order;
  }

  private readonly better = (a: number, b: number): boolean => {
    const la = this.logits[a]!;
    const lb = this.logits[b]!;
    return la > lb || (la === lb && a < b);
  };
}

/** Above this, the first round is a quickselect instead of a heap. */
const HEAP_MAX = 1024;

/**
 * The best n ids, ranked, by one pass over the row with a heap of n whose root is the worst kept:
 * an id that does not beat the root (most of them, past the first few thousand) costs one compare.
 */
function topByHeap(logits: Float32Array, n: number, better: (a: number, b: number) => boolean): Int32Array {
  const heap = new Int32Array(n);
  const worse = (a: number, b: number) => better(b, a);
  const siftDown = (from: number) => {
    let i = from;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) return;
      const r = l + 1;
      const w = r < n && worse(heap[r]!, heap[l]!) ? r : l;
      if (!worse(heap[w]!, heap[i]!)) return;
      const t = heap[i]!;
      heap[i] = heap[w]!;
      heap[w] = t;
      i = w;
    }
  };
  for (let i = 0; i < n; i++) heap[i] = i;
  for (let i = (n >> 1) - 1; i >= 0; i--) siftDown(i);
  let rootLogit = logits[heap[0]!]!;
  for (let id = n; id < logits.length; id++) {
    const x = logits[id]!;
    // Ids come in increasing order, so a tie with the root loses: only a strictly larger logit enters.
    if (!(x > rootLogit)) continue;
    heap[0] = id;
    siftDown(0);
    rootLogit = logits[heap[0]!]!;
  }
  return heap.sort((a, b) => (better(a, b) ? -1 : 1));
}

/**
 * Quickselect (Hoare partition, median-of-three pivot) over order[lo, hi): afterwards order[lo, n)
 * holds the ids that rank before every id of order[n, hi), in no particular order. `better` is a
 * strict total order (ties broken by id), so no two ids compare equal.
 */
function selectBest(
  order: Int32Array,
  lo: number,
  hi: number,
  n: number,
  better: (a: number, b: number) => boolean,
): void {
  const k = n - 1; // the last rank that must land in front
  let l = lo;
  let r = hi - 1;
  while (r > l) {
    const m = (l + r) >>> 1;
    let a = order[l]!;
    let b = order[m]!;
    let c = order[r]!;
    if (better(b, a)) [a, b] = [b, a];
    if (better(c, b)) {
      [b, c] = [c, b];
      if (better(b, a)) [a, b] = [b, a];
    }
    const pivot = b; // the median of the three
    let i = l;
    let j = r;
    while (i <= j) {
      while (better(order[i]!, pivot)) i++;
      while (better(pivot, order[j]!)) j--;
      if (i <= j) {
        const t = order[i]!;
        order[i] = order[j]!;
        order[j] = t;
        i++;
        j--;
      }
    }
    // [l, j] rank before or at the pivot, [i, r] at or after it, anything between is the pivot.
    if (k <= j) r = j;
    else if (k >= i) l = i;
    else return;
  }
}
