import { zerosLike } from '../autodiff.ts';
import type { OpDef, Value } from '../builder.ts';
import { normAxis } from '../dims.ts';
import { unsqueeze } from './shape.ts';

/**
 * Gather rows (embedding lookup): out = data[indices] along `axis`. Its gradient scatters the
 * incoming gradient back with addition, so repeated indices accumulate (ScatterND, reduction=add).
 */
export const GATHER: OpDef = {
  type: 'Gather',
  infer: ([data, indices], attrs) => {
    if (indices!.dtype !== 'int64' && indices!.dtype !== 'int32') {
      throw new Error(`gather: indices ${indices} must be int64 or int32`);
    }
    const a = normAxis((attrs.axis as number) ?? 0, data!.rank, `gather ${data}`);
    return [
      {
        dtype: data!.dtype,
        shape: [...data!.shape.slice(0, a), ...indices!.shape, ...data!.shape.slice(a + 1)],
      },
    ];
  },
  vjp: ({ grads: [g], inputs: [data, indices], attrs, node }) => {
    if (((attrs.axis as number) ?? 0) !== 0)
      throw new Error(`${node.name}: gather gradient supports axis 0 only`);
    const idx = indices!.dtype === 'int64' ? indices! : castIndex(indices!);
    return [scatterAdd(zerosLike(data!), unsqueeze(idx, [-1]), g!), undefined];
  },
};

const SCATTER_ND_ADD: OpDef = {
  type: 'ScatterND',
  infer: ([data]) => [{ dtype: data!.dtype, shape: data!.shape }],
};

function scatterAdd(data: Value, indices: Value, updates: Value): Value {
  return data.graph.op(
    SCATTER_ND_ADD,
    [data, indices, updates],
    { reduction: 'add' },
    { name: 'ScatterAdd' },
  );
}

const CAST_I64: OpDef = { type: 'Cast', infer: ([x]) => [{ dtype: 'int64', shape: x!.shape }] };

function castIndex(x: Value): Value {
  return x.graph.op(CAST_I64, [x], { to: 7 });
}

export function gather(data: Value, indices: Value, axis = 0, name?: string): Value {
  return data.graph.op(GATHER, [data, indices], { axis }, { name });
}
