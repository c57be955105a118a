/**
 * The n-gram baselines the backbone's held-out perplexity is read against, on the same tokens:
 * a unigram with add-one smoothing and an interpolated Kneser-Ney bigram (Chen & Goodman,
 * https://dash.harvard.edu/handle/1/25104739; discount 0.75). Both are fitted on the training
 * stream given and scored on every next-token prediction of the held-out stream, as the model is.
 */

export function unigramPerplexity(train: Uint16Array, heldout: Uint16Array, vocab: number): number {
  const counts = new Float64Array(vocab);
  for (const t of train) counts[t]! += 1;
  const denom = train.length + vocab;
  let nll = 0;
  for (let i = 1; i < heldout.length; i++) nll -= Math.log((counts[heldout[i]!]! + 1) / denom);
  return Math.exp(nll / (heldout.length - 1));
}

export function bigramPerplexity(
  train: Uint16Array,
  heldout: Uint16Array,
  vocab: number,
  discount = 0.75,
): number {
  const pair = new Map<number, number>();
  const context = new Float64Array(vocab); // c(v)
  const followers = new Float64Array(vocab); // N1+(v .)
  const continuation = new Float64Array(vocab); // N1+(. w)
  for (let i = 0; i + 1 < train.length; i++) {
    const k = train[i]! * vocab + train[i + 1]!;
    const c = pair.get(k) ?? 0;
    if (c === 0) {
      followers[train[i]!]! += 1;
      continuation[train[i + 1]!]! += 1;
    }
    pair.set(k, c + 1);
    context[train[i]!]! += 1;
  }
  const types = pair.size;
  // The continuation distribution, mixed with a little uniform mass so no token has zero probability.
  const pCont = (w: number) => 0.999 * (continuation[w]! / types) + 0.001 / vocab;
  let nll = 0;
  for (let i = 1; i < heldout.length; i++) {
    const v = heldout[i - 1]!;
    const w = heldout[i]!;
    const cv = context[v]!;
    let p: number;
    if (cv === 0) p = pCont(w);
    else {
      const c = pair.get(v * vocab + w) ?? 0;
      p = Math.max(c - discount, 0) / cv + ((discount * followers[v]!) / cv) * pCont(w);
    }
    nll -= Math.log(p);
  }
  return Math.exp(nll / (heldout.length - 1));
}

/** Both baselines fitted on Brown alone and on the whole training stream; the stronger of each. */
export function baselines(
  data: { brown: Uint16Array; wordnet: Uint16Array; heldout: Uint16Array },
  vocab: number,
) {
  const all = new Uint16Array(data.brown.length + data.wordnet.length);
  all.set(data.brown);
  all.set(data.wordnet, data.brown.length);
  return {
    unigram_ppl: Math.min(
      unigramPerplexity(data.brown, data.heldout, vocab),
      unigramPerplexity(all, data.heldout, vocab),
    ),
    bigram_ppl: Math.min(
      bigramPerplexity(data.brown, data.heldout, vocab),
      bigramPerplexity(all, data.heldout, vocab),
    ),
  };
}
