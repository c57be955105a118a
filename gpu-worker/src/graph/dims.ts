/**
 * Symbolic dimensions. A dim is a number or a product of named dynamic sizes with an integer
 * coefficient, written canonically: `batch`, `seq`, `batch*seq`, `4*seq`. That is enough to follow
 * the reshapes a transformer makes, (B, T, C) -> (B*T, C) -> (B, T, H, D), with dynamic B and T.
 */
export type Dim = number | string;
export type Shape = readonly Dim[];

interface Monomial {
  coef: number;
  factors: string[]; // sorted
}

function parse(d: Dim): Monomial {
  if (typeof d === 'number') return { coef: d, factors: [] };
  let coef = 1;
  const factors: string[] = [];
  for (const part of d.split('*')) {
    if (/^\d+$/.test(part)) coef *= Number(part);
    else factors.push(part);
  }
  return { coef, factors: factors.sort() };
}

function format(m: Monomial): Dim {
  if (m.factors.length === 0) return m.coef;
  const sym = m.factors.join('*');
  return m.coef === 1 ? sym : `${m.coef}*${sym}`;
}

export function isStatic(d: Dim): d is number {
  return typeof d === 'number';
}

export function dimEq(a: Dim, b: Dim): boolean {
  return format(parse(a)) === format(parse(b));
}

export function dimMul(a: Dim, b: Dim): Dim {
  const x = parse(a);
  const y = parse(b);
  return format({ coef: x.coef * y.coef, factors: [...x.factors, ...y.factors].sort() });
}

export function dimProduct(dims: Shape): Dim {
  return dims.reduce<Dim>((acc, d) => dimMul(acc, d), 1);
}

/** a / b when it divides exactly (as integers and as a multiset of symbols), else undefined. */
export function dimDiv(a: Dim, b: Dim): Dim | undefined {
  const x = parse(a);
  const y = parse(b);
  if (y.coef === 0 || x.coef % y.coef !== 0) return undefined;
  const rest = [...x.factors];
  for (const f of y.factors) {
    const i = rest.indexOf(f);
    if (i < 0) return undefined;
    rest.splice(i, 1);
  }
  return format({ coef: x.coef / y.coef, factors: rest });
}

export function shapeStr(s: Shape): string {
  return `[${s.join(', ')}]`;
}

export function shapeEq(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => dimEq(d, b[i]!));
}

/** Numpy broadcasting; undefined when the shapes cannot broadcast (or it cannot be proven). */
export function broadcastShapes(a: Shape, b: Shape): Dim[] | undefined {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (dimEq(da, db)) out.push(da);
    else if (da === 1) out.push(db);
    else if (db === 1) out.push(da);
    else return undefined;
  }
  return out;
}

/** Normalise a possibly negative axis against a rank, or throw with context. */
export function normAxis(axis: number, rank: number, where: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`${where}: axis ${axis} out of range for rank ${rank}`);
  return a;
}
