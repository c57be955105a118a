import {
  Graph,
  gather,
  gatherElements,
  logSoftmax,
  matmul,
  squeeze,
  unsqueeze,
  type Value,
} from '../graph/index.ts';
import type { SideNetShape } from '../side-net/config.ts';
import { sideForward } from '../side-net/graph.ts';
import { rowAdapterInputs } from '../side-net/stacked.ts';
import { SIDE_IO } from '../side-net/steps.ts';

/** Names of the scoring graphs' extra inputs and output. */
export const SCORE_IO = {
  scorePositions: 'score_positions', // (n) int64: the positions whose next token is scored
  targets: 'targets', // (batch, n) int64: the token each scored position should predict
  logprobs: 'token_logprobs', // (batch, n) log p(target | prefix)
} as const;

/**
 *   hidden (B, T, d) ─ Gather(axis 1, score_positions) ─ (B, n, d) ─ @ lm_head^T ─ (B, n, V)
 *     ─ LogSoftmax ─ GatherElements(targets) ─ (B, n)
 *
 * Only the n scored positions meet the head (a completion is a few tokens, the prompt many),
 * and only (B, n) leaves the session.
 */
function targetLogprobs(g: Graph, hidden: Value, head: Value): void {
  const at = g.input(SCORE_IO.scorePositions, 'int64', ['n']);
  const targets = g.input(SCORE_IO.targets, 'int64', ['batch', 'n']);
  const picked = gather(hidden, at, 1, 'ScoredPositions'); // (B, n, d)
  const logits = g.scope('lm_head', () => matmul(picked, head, { transB: true })); // (B, n, V)
  const logp = logSoftmax(logits, -1, 'LogSoftmax');
  const chosen = gatherElements(logp, unsqueeze(targets, [2]), 2, 'PickTargets'); // (B, n, 1)
  g.output(squeeze(chosen, [2]), SCORE_IO.logprobs);
}

/**
 * One sequence scored by several adapters at once: the backbone's results (batch 1) broadcast
 * over the rows, row b runs the adapter whose weights are row b of the stacked weights, and every
 * row shares one LM-head product.
 */
export function buildStackedScoreGraph(s: SideNetShape): Graph {
  const g = new Graph({ name: 'side-net-stacked-score' });
  const params = rowAdapterInputs(g, s);
  const taps = new Map(s.taps.map((t) => [t, g.input(SIDE_IO.tap(t), 'float32', [1, 'seq', s.d])]));
  const finalHidden = g.input(SIDE_IO.finalHidden, 'float32', [1, 'seq', s.d]);
  const head = g.input(SIDE_IO.lmHead, 'float32', [s.vocab, s.d]);
  const mask = g.input(SIDE_IO.mask, 'int64', [1, 'seq']);
  const positions = g.input(SIDE_IO.positions, 'int64', [1, 'seq']);
  const { out } = sideForward(g, s, params, { taps, finalHidden, mask, positions }); // (B, T, d)
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
