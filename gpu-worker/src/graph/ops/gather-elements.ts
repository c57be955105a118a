import { zerosLike } from '../autodiff.ts';
import type { OpDef, Value } from '../builder.ts';
import { dimEq, normAxis, shapeStr } from '../dims.ts';

/**
 * GatherElements: out[i][j] = data[i][indices[i][j]] along `axis` (out has the indices' shape),
 * e.g. picking each row's label log-probability. Its gradient scatters the incoming gradient
 * back with addition (ScatterElements, reduction=add), so repeated indices accumulate.
 */
export const GATHER_ELEMENTS: OpDef = {
  type: 'GatherElements',
  infer: ([data, indices], attrs) => {
    if (indices!.dtype !== 'int64') throw new Error(`gatherElements: indices ${indices} must be int64`);
    if (indices!.rank !== data!.rank) {
      throw new Error(`gatherElements: indices ${indices} must have the rank of ${data}`);
    }
    const a = normAxis((attrs.axis as number) ?? 0, data!.rank, `gatherElements ${data}`);
    const bad = indices!.shape.some((d, i) => i !== a && !dimEq(d, data!.shape[i]!));
    if (bad) {
      throw new Error(
        `shape mismatch: gatherElements indices ${shapeStr(indices!.shape)} must match ` +
          `${shapeStr(data!.shape)} on every axis but ${a}`,
      );
    }
    return [{ dtype: data!.dtype, shape: indices!.shape }];
  },
  vjp: ({ grads: [g], inputs: [data, indices], attrs }) => [
    scatterElementsAdd(zerosLike(data!), indices!, g!, (attrs.axis as number) ?? 0),
    undefined,
  ],
};

const SCATTER_ELEMENTS_ADD: OpDef = {
  type: 'ScatterElements',
  infer: ([data]) => [{ dtype: data!.dtype, shape: data!.shape }],
};

export function scatterElementsAdd(data: Value, indices: Value, updates: Value, axis: number): Value {
  return data.graph.op(
    SCATTER_ELEMENTS_ADD,
    [data, indices, updates],
    { axis, reduction: 'add' },
    { name: 'ScatterElementsAdd' },
  );
}

export function gatherElements(data: Value, indices: Value, axis: number, name?: string): Value {
  return data.graph.op(GATHER_ELEMENTS, [data, indices], { axis }, { name });
}
