import { Graph, gatherElements, logSoftmax, matmul, squeeze, unsqueeze, type Value } from '../graph/index.ts';
import type { SideNetShape } from '../side-net/config.ts';
import { sideForward } from '../side-net/graph.ts';
import { sideNetParams } from '../side-net/params.ts';
import { SIDE_IO } from '../side-net/steps.ts';

/** Names of the scoring graphs' extra input and output. */
export const SCORE_IO = {
  targets: 'targets', // (batch, seq) int64: the token each position should predict
  logprobs: 'token_logprobs', // (batch, seq) log p(target | prefix)
} as const;

/**
 *   hidden (B, T, d) ─ @ lm_head^T ─ logits (B, T, V) ─ LogSoftmax ─ GatherElements(targets) ─ (B, T)
 *
 * Only (B, T) leaves the session; the (T, V) logits stay inside it.
 */
function targetLogprobs(g: Graph, hidden: Value, head: Value): void {
  const targets = g.input(SCORE_IO.targets, 'int64', ['batch', 'seq']);
  const logits = g.scope('lm_head', () => matmul(hidden, head, { transB: true })); // (B, T, V)
  const logp = logSoftmax(logits, -1, 'LogSoftmax');
  const picked = gatherElements(logp, unsqueeze(targets, [2]), 2, 'PickTargets'); // (B, T, 1)
  g.output(squeeze(picked, [2]), SCORE_IO.logprobs);
}

/** The side network over a whole sequence (no cache), scoring every position's target. */
export function buildSideScoreGraph(s: SideNetShape): Graph {
  const g = new Graph({ name: 'side-net-score' });
  const params: Record<string, Value> = {};
  for (const p of sideNetParams(s)) params[p.name] = g.input(SIDE_IO.param(p.name), 'float32', p.shape);
  const taps = new Map(s.taps.map((t) => [t, g.input(SIDE_IO.tap(t), 'float32', ['batch', 'seq', s.d])]));
  const finalHidden = g.input(SIDE_IO.finalHidden, 'float32', ['batch', 'seq', s.d]);
  const head = g.input(SIDE_IO.lmHead, 'float32', [s.vocab, s.d]);
  const mask = g.input(SIDE_IO.mask, 'int64', ['batch', 'seq']);
  const positions = g.input(SIDE_IO.positions, 'int64', ['batch', 'seq']);
  const { out } = sideForward(g, s, params, { taps, finalHidden, mask, positions });
  targetLogprobs(g, out, head);
  return g;
}

/** The plain backbone's scores from its final normed state (the adapter-less row of a score request). */
export function buildBackboneScoreGraph(d: number, vocab: number): Graph {
  const g = new Graph({ name: 'backbone-score' });
  const hidden = g.input(SIDE_IO.finalHidden, 'float32', ['batch', 'seq', d]);
  const head = g.input(SIDE_IO.lmHead, 'float32', [vocab, d]);
  targetLogprobs(g, hidden, head);
  return g;
}
