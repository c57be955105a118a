import type { OpDef, Value } from '../builder.ts';
import { broadcastShapes, dimEq } from '../dims.ts';
import { floatDtype, rankAtLeast, sameDtype } from './check.ts';
import { reshape, transpose } from './shape.ts';

export interface MatMulOptions {
  /** Use op(a) = a^T over the last two axes. */
  transA?: boolean;
  transB?: boolean;
  name?: string;
}

function matmulShape(a: Value, b: Value, transA: boolean, transB: boolean) {
  sameDtype([a, b]);
  floatDtype(a);
  rankAtLeast(a, 2);
  rankAtLeast(b, 2);
  const [m, ka] = transA ? [a.shape.at(-1)!, a.shape.at(-2)!] : [a.shape.at(-2)!, a.shape.at(-1)!];
  const [kb, n] = transB ? [b.shape.at(-1)!, b.shape.at(-2)!] : [b.shape.at(-2)!, b.shape.at(-1)!];
  if (!dimEq(ka, kb)) {
    throw new Error(
      `shape mismatch: ${a}${transA ? '^T' : ''} @ ${b}${transB ? '^T' : ''}: inner dims ${ka} and ${kb} differ`,
    );
  }
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  if (!batch) throw new Error(`shape mismatch: batch dims of ${a} and ${b} do not broadcast`);
  return [{ dtype: a.dtype, shape: [...batch, m, n] }];
}

// C = op(A) @ op(B). Gradients (before the driver sums broadcast batch axes):
//   plain:    dA = dC B^T          dB = A^T dC
//   transA:   dA = B dC^T          dB = A dC
//   transB:   dA = dC B            dB = dC^T A
//   both:     dA = B^T dC^T        dB = dC^T A^T
function matmulVjp(
  a: Value,
  b: Value,
  g: Value,
  transA: boolean,
  transB: boolean,
  needs: readonly boolean[],
): (Value | undefined)[] {
  const k = a.shape.at(-1);
  const n = g.shape.at(-1);
  if (needs[1] && !transA && b.rank === 2 && a.rank > 2 && typeof k === 'number' && typeof n === 'number') {
    // A weight shared across leading axes, x (..., K) @ w (K, N): fold those axes into the M of
    // one GEMM, dW = x2^T g2 with x2 (M, K), g2 (M, N), rather than a batched product summed after.
    const x2 = reshape(a, [-1, k]);
    const g2 = reshape(g, [-1, n]);
    const db = transB ? matmul(g2, x2, { transA: true }) : matmul(x2, g2, { transA: true });
    const [da] = matmulVjp(a, b, g, transA, transB, [needs[0]!, false]);
    return [da, db];
  }
  let da: Value | undefined;
  let db: Value | undefined;
  if (!transA && !transB) {
    da = needs[0] ? matmul(g, b, { transB: true }) : undefined;
    db = needs[1] ? matmul(a, g, { transA: true }) : undefined;
  } else if (transA && !transB) {
    da = needs[0] ? matmul(b, g, { transB: true }) : undefined;
    db = needs[1] ? matmul(a, g) : undefined;
  } else if (!transA && transB) {
    da = needs[0] ? matmul(g, b) : undefined;
    db = needs[1] ? matmul(g, a, { transA: true }) : undefined;
  } else {
    da = needs[0] ? matmul(b, g, { transA: true, transB: true }) : undefined;
    db = needs[1] ? matmul(g, a, { transA: true, transB: true }) : undefined;
  }
  return [da, db];
}

export const MATMUL: OpDef = {
  type: 'MatMul',
  infer: ([a, b]) => matmulShape(a!, b!, false, false),
  vjp: ({ inputs: [a, b], grads: [g], needs }) => matmulVjp(a!, b!, g!, false, false, needs),
};

/** com.microsoft FusedMatMul: transposes folded into the GEMM, no copies (float32 only on CPU). */
export const FUSED_MATMUL: OpDef = {
  type: 'FusedMatMul',
  domain: 'com.microsoft',
  infer: ([a, b], attrs) => matmulShape(a!, b!, attrs.transA === 1, attrs.transB === 1),
  vjp: ({ inputs: [a, b], grads: [g], attrs, needs }) =>
    matmulVjp(a!, b!, g!, attrs.transA === 1, attrs.transB === 1, needs),
};

function swapLast(x: Value): Value {
  const perm = x.shape.map((_, i) => i);
  perm[perm.length - 1] = perm.length - 2;
  perm[perm.length - 2] = perm.length - 1;
  return transpose(x, perm);
}

/** Batched matrix product with optional transposes of either operand's last two axes. */
export function matmul(a: Value, b: Value, opts: MatMulOptions = {}): Value {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  if (!transA && !transB) return a.graph.op(MATMUL, [a, b], {}, { name: opts.name });
  if (a.dtype === 'float32') {
    return a.graph.op(
      FUSED_MATMUL,
      [a, b],
      { transA: transA ? 1 : 0, transB: transB ? 1 : 0 },
      { name: opts.name },
    );
  }
  // FusedMatMul has no float64 kernel: transpose explicitly.
  return a.graph.op(MATMUL, [transA ? swapLast(a) : a, transB ? swapLast(b) : b], {}, { name: opts.name });
}
