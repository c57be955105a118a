/**
 * Classification by completion (DESIGN.md section 2): every candidate label is scored by the
 * model's loss on `label + eos` after the text's prompt (classificationCandidates); the class is
 * the candidate with the lowest loss. Use summed (not mean) token loss, i.e. -log p(label + eos),
 * so labels of different token lengths compare as whole sequences.
 */

/** The label with the lowest loss; NaN counts as worst, ties go to the earlier label. */
export function argminLabel(labels: readonly string[], losses: readonly number[]): string {
  if (labels.length === 0) throw new RangeError('argminLabel: no labels');
  if (losses.length !== labels.length) {
    throw new RangeError(`argminLabel: ${losses.length} losses for ${labels.length} labels`);
  }
  let best = -1;
  for (let i = 0; i < labels.length; i++) {
    const loss = losses[i]!;
    if (Number.isNaN(loss)) continue;
    if (best < 0 || loss < losses[best]!) best = i;
  }
  return labels[Math.max(best, 0)]!; // all NaN: the first
}

export interface ScoredExample {
  /** The true class. */
  gold: string;
  /** losses[i]: the loss of labels[i] for this example. */
  losses: readonly number[];
}

export interface ClassificationMetrics {
  /** NaN when nothing was scored. */
  accuracy: number;
  correct: number;
  total: number;
  predictions: string[];
  /** Per true class: how many there were and how many were predicted right. */
  perLabel: Record<string, { correct: number; total: number }>;
}

export function classificationAccuracy(
  labels: readonly string[],
  scored: readonly ScoredExample[],
): ClassificationMetrics {
  const perLabel: Record<string, { correct: number; total: number }> = {};
  for (const label of labels) perLabel[label] = { correct: 0, total: 0 };
  const predictions: string[] = [];
  let correct = 0;
  for (const s of scored) {
    const counts = perLabel[s.gold];
    if (!counts) throw new RangeError(`classificationAccuracy: '${s.gold}' is not one of the labels`);
    const predicted = argminLabel(labels, s.losses);
    predictions.push(predicted);
    counts.total++;
    if (predicted === s.gold) {
      correct++;
      counts.correct++;
    }
  }
  const total = scored.length;
  return { accuracy: total === 0 ? Number.NaN : correct / total, correct, total, predictions, perLabel };
}
