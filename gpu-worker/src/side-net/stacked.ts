import { Graph, type Value } from '../graph/index.ts';
import type { SideNetShape } from './config.ts';
import { sideNetParams } from './params.ts';
import { SIDE_IO, sideDecodeStep } from './steps.ts';

/**
 * Adapter weights stacked on the batch axis, row b holding the weights of the adapter row b
 * runs, shaped so that sideForward's ops broadcast over the batch:
 *
 *   adapter.<name> (B, in, out)   x (B, T, in) @ it ─ (B, T, out)    projections
 *   adapter.<name> (B, 1, n)      * or + over (B, T, n)              norms, gates, biases
 *
 * A vector parameter (n) is fed as (B, 1, n): the same bytes as (B, n), no Unsqueeze.
 *
 * The rows come laid out rather than gathered in the graph (an `adapter_index` into an (A, ...)
 * stack): a Gather would copy every row's weights on every decode step, as many bytes as the
 * batched products then read, while a running batch's rows change only when sequences join or
 * leave (serving/row-weights.ts keeps the rows up to date at those moments only).
 */
export function rowAdapterInputs(g: Graph, s: SideNetShape): Record<string, Value> {
  const params: Record<string, Value> = {};
  for (const p of sideNetParams(s)) {
    params[p.name] = g.input(SIDE_IO.param(p.name), 'float32', ['batch', ...rowShape(p.shape)]);
  }
  return params;
}

/** One row's slice of a stacked parameter: a matrix as it is, a vector (n) as (1, n). */
export function rowShape(shape: readonly number[]): number[] {
  return shape.length === 1 ? [1, shape[0]!] : [...shape];
}

/**
 * One decoding step for a batch mixing any adapters of one shape: the side network runs once
 * for every row, each on its own adapter's weights, and one LM-head product serves them all.
 * Row b gives what a pass of its adapter's own session gives.
 */
export function buildStackedSideInferenceGraph(s: SideNetShape): Graph {
  const g = new Graph({ name: 'side-net-stacked-step' });
  sideDecodeStep(g, s, rowAdapterInputs(g, s));
  return g;
}
