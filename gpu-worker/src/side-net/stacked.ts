import { Graph, gather, type Value } from '../graph/index.ts';
import type { SideNetShape } from './config.ts';
import { sideNetParams } from './params.ts';
import { SIDE_IO, sideDecodeStep } from './steps.ts';

/** Inputs of the stacked graphs beyond SIDE_IO (whose `adapter.<name>` gain a leading axis). */
export const STACKED_IO = {
  adapterIndex: 'adapter_index', // (batch) int64: row b runs adapter adapter_index[b] of the stack
} as const;

/**
 * Adapters of one shape stacked on a leading axis A, and each row's own slice of them, shaped
 * so that sideForward's ops broadcast over the batch:
 *
 *   adapter.<name> (A, in, out) ─ Gather(axis 0, adapter_index) ─ (B, in, out)   x (B, T, in) @ it
 *   adapter.<name> (A, 1, n)    ─ Gather(axis 0, adapter_index) ─ (B, 1, n)      norms, gates and
 *                                                                                biases over T
 * A vector parameter (n) is fed as (A, 1, n): the same bytes, no Unsqueeze per step.
 */
export function perRowAdapterParams(g: Graph, s: SideNetShape, adapterIndex: Value): Record<string, Value> {
  const params: Record<string, Value> = {};
  g.scope('adapter_rows', () => {
    for (const p of sideNetParams(s)) {
      const stacked = g.input(SIDE_IO.param(p.name), 'float32', ['adapters', ...stackedShape(p.shape)]);
      params[p.name] = gather(stacked, adapterIndex, 0, `${p.name}/Gather`); // (B, in, out) | (B, 1, n)
    }
  });
  return params;
}

/** One adapter's slice of a stacked parameter: matrices as they are, a vector (n) as (1, n). */
export function stackedShape(shape: readonly number[]): number[] {
  return shape.length === 1 ? [1, shape[0]!] : [...shape];
}

/**
 * One decoding step for a batch mixing any adapters of one shape: each row gathers its
 * adapter's weights, the side network runs once for all rows, and one LM-head product serves
 * them all. Rows of one adapter give what that adapter's own session gives.
 */
export function buildStackedSideInferenceGraph(s: SideNetShape): Graph {
  const g = new Graph({ name: 'side-net-stacked-step' });
  const adapterIndex = g.input(STACKED_IO.adapterIndex, 'int64', ['batch']);
  sideDecodeStep(g, s, perRowAdapterParams(g, s, adapterIndex));
  return g;
}
