import { createHash } from 'node:crypto';
import { type Shape, shapeStr } from './dims.ts';
import type { AttrValue, DType } from './proto.ts';

export type { Dim, Shape } from './dims.ts';
export type { DType } from './proto.ts';

/** Node attributes: ONNX values, or a builder graph for ops with a body (Scan, Loop). */
export type Attrs = Record<string, AttrValue | { subgraph: Graph }>;

/** What one primitive op is: how it infers its outputs, and its vector-Jacobian product. */
export interface OpDef {
  /** The ONNX operator this op emits. */
  type: string;
  domain?: string;
  /** Output dtypes and shapes; throw with a plain message, the builder adds the node path. */
  infer(inputs: readonly Value[], attrs: Attrs, hints?: readonly Shape[]): { dtype: DType; shape: Shape }[];
  /**
   * Gradients of the inputs given gradients of the outputs (undefined: zero or not needed).
   * A returned gradient may have the output's broadcast shape: the autodiff driver reduces it
   * back to the input's shape. Ops without a vjp stop gradients.
   */
  vjp?(ctx: VjpContext): (Value | undefined)[];
  /**
   * How many of the inputs go to ONNX; the rest exist for autodiff only (values a custom
   * gradient rule needs). Default: all.
   */
  onnxInputs?: number;
}

export interface VjpContext {
  node: Node;
  inputs: readonly Value[];
  outputs: readonly Value[];
  attrs: Attrs;
  /** One gradient per output; the driver fills zeros for outputs that got none. */
  grads: readonly Value[];
  /** Whether each input needs a gradient; rules may skip work for the others. */
  needs: readonly boolean[];
}

export class Value {
  constructor(
    readonly graph: Graph,
    readonly name: string,
    readonly dtype: DType,
    readonly shape: Shape,
    readonly producer: Node | undefined,
    /** For constants: the data, so rules can fold them (e.g. Pow's exponent). */
    readonly constData?: ArrayLike<number | bigint>,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  toString(): string {
    return `%${this.name}: ${this.dtype}${shapeStr(this.shape)}`;
  }
}

export class Node {
  constructor(
    readonly name: string,
    readonly op: OpDef,
    readonly inputs: readonly Value[],
    readonly attrs: Attrs,
    public outputs: readonly Value[] = [],
  ) {}
}

export type TypedData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array;

/** Where an initializer's bytes already sit in an external data file (written as it was built). */
export interface ExternalRef {
  /** The data file's name, relative to the model file. */
  location: string;
  offset: number;
  length: number;
}

export interface Initializer {
  value: Value;
  /** Inline bytes; empty for an initializer held in external data (`external`). */
  data: TypedData;
  dims: readonly number[];
  external?: ExternalRef;
}

export interface GraphOptions {
  name: string;
  /** Opset per domain; '' is the default domain. */
  opsets: Record<string, number>;
}

const DEFAULTS: GraphOptions = { name: 'ladder', opsets: { '': 21, 'com.microsoft': 1 } };

export interface EmitOptions {
  /** The last path segment of the node name; defaults to the op type. */
  name?: string | undefined;
  /** Symbolic output shapes, for ops whose output shape is a run-time tensor. */
  hints?: readonly Shape[];
}

export class GraphError extends Error {
  override name = 'GraphError';
}

/**
 * A typed ONNX graph under construction. Values know their dtype and (symbolic) shape; every
 * node is checked when it is added and named by its scope path (`/side/layers.3/attn/MatMul`).
 * Nodes are kept in construction order, which is a topological order.
 */
export class Graph {
  readonly options: GraphOptions;
  readonly nodes: Node[] = [];
  readonly inputs: Value[] = [];
  readonly outputs: Value[] = [];
  readonly initializers: Initializer[] = [];
  private readonly scopes: string[] = [];
  private readonly names = new Set<string>();
  private readonly byName = new Map<string, Value>();
  private readonly constants = new Map<string, Value>();

  constructor(opts: Partial<GraphOptions> = {}) {
    this.options = { ...DEFAULTS, ...opts } satisfies GraphOptions;
  }

  /** Run `fn` with `name` appended to the node path. */
  scope<T>(name: string, fn: () => T): T {
    this.scopes.push(name);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  /** Run `fn` with the node path replaced by `path` (used to name gradient nodes). */
  withPath<T>(path: string, fn: () => T): T {
    const saved = this.scopes.splice(0, this.scopes.length, ...path.split('/').filter(Boolean));
    try {
      return fn();
    } finally {
      this.scopes.splice(0, this.scopes.length, ...saved);
    }
  }

  get path(): string {
    return `/${this.scopes.join('/')}`;
  }

  input(name: string, dtype: DType, shape: Shape): Value {
    this.claim(name, 'input');
    const v = new Value(this, name, dtype, [...shape], undefined);
    this.inputs.push(v);
    this.byName.set(name, v);
    return v;
  }

  /** A named initializer (frozen weights). Large ones go to external data when saved. */
  initializer(name: string, dtype: DType, dims: readonly number[], data: TypedData): Value {
    this.claim(name, 'initializer');
    const v = new Value(this, name, dtype, [...dims], undefined);
    this.initializers.push({ value: v, data, dims });
    this.byName.set(name, v);
    return v;
  }

  /**
   * An initializer whose bytes were already written to external data (see ExternalDataWriter), so
   * a large model is built without holding its weights in memory.
   */
  externalInitializer(name: string, dtype: DType, dims: readonly number[], ref: ExternalRef): Value {
    this.claim(name, 'initializer');
    const v = new Value(this, name, dtype, [...dims], undefined);
    this.initializers.push({ value: v, data: new Uint8Array(0), dims, external: ref });
    this.byName.set(name, v);
    return v;
  }

  /** A constant, deduplicated by content: the same numbers are one initializer. */
  constant(dtype: DType, dims: readonly number[], data: TypedData): Value {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const key = `${dtype}[${dims.join(',')}]:${
      bytes.length <= 64 ? Buffer.from(bytes).toString('hex') : createHash('sha1').update(bytes).digest('hex')
    }`;
    const found = this.constants.get(key);
    if (found) return found;
    const scalar =
      dims.length === 0 && data.length === 1 ? `_${String(data[0]).replace(/[^0-9a-zA-Z.e-]/g, '_')}` : '';
    const name = this.unique(`/const/${dtype}${scalar}`);
    const v = new Value(this, name, dtype, [...dims], undefined, data);
    this.initializers.push({ value: v, data, dims });
    this.constants.set(key, v);
    this.byName.set(name, v);
    return v;
  }

  scalar(x: number, dtype: DType = 'float32'): Value {
    return this.constant(dtype, [], typedOf(dtype, [x]));
  }

  vector(xs: readonly number[], dtype: DType = 'int64'): Value {
    return this.constant(dtype, [xs.length], typedOf(dtype, xs));
  }

  /** Mark a value as a graph output under `name` (an Identity node gives it that exact name). */
  output(v: Value, name: string): Value {
    const nodeName = `${this.path === '/' ? '' : this.path}/outputs/${name}`;
    this.own(v, nodeName);
    this.claim(name, 'output');
    const node = new Node(nodeName, IDENTITY, [v], {});
    const out = new Value(this, name, v.dtype, v.shape, node);
    node.outputs = [out];
    this.nodes.push(node);
    this.outputs.push(out);
    this.byName.set(name, out);
    return out;
  }

  /**
   * For a body graph (Scan, Loop): a value of the enclosing graph, referred to by its name as
   * ONNX allows (an implicit input), usable here like any other value.
   */
  outer(v: Value): Value {
    const found = this.byName.get(v.name);
    if (found) return found;
    const inner = new Value(this, v.name, v.dtype, v.shape, undefined);
    this.byName.set(v.name, inner);
    this.names.add(v.name);
    return inner;
  }

  /** A value by name, or an error listing what exists. */
  get(name: string): Value {
    const v = this.byName.get(name);
    if (!v) {
      const known = [...this.byName.keys()].filter((k) => !k.startsWith('/const/')).slice(0, 20);
      throw new GraphError(
        `in ${this.path === '/' ? '/' : `${this.path}/`}: unknown value '${name}' ` +
          `(known: ${known.join(', ')}${this.byName.size > 20 ? ', ...' : ''})`,
      );
    }
    return v;
  }

  /** Add a node for `op`; checks inputs belong here, infers and names the outputs. */
  emit(op: OpDef, inputs: readonly Value[], attrs: Attrs = {}, opts: EmitOptions = {}): Value[] {
    const nodeName = this.unique(`${this.path === '/' ? '' : this.path}/${opts.name ?? op.type}`);
    inputs.forEach((v, i) => {
      if (!(v instanceof Value))
        throw new GraphError(`${nodeName}: input ${i} is not a graph value (got ${String(v)})`);
      if (v.graph !== this)
        throw new GraphError(`${nodeName}: unknown input ${v} (it belongs to another graph)`);
    });
    let infos: { dtype: DType; shape: Shape }[];
    try {
      infos = op.infer(inputs, attrs, opts.hints);
    } catch (err) {
      throw new GraphError(`${nodeName}: ${(err as Error).message}`);
    }
    const node = new Node(nodeName, op, [...inputs], attrs);
    node.outputs = infos.map((info, i) => {
      const name = infos.length === 1 ? `${nodeName}/output_0` : `${nodeName}/output_${i}`;
      this.names.add(name);
      const v = new Value(this, name, info.dtype, [...info.shape], node);
      this.byName.set(name, v);
      return v;
    });
    this.nodes.push(node);
    return [...node.outputs];
  }

  /** Single-output shorthand for emit. */
  op(op: OpDef, inputs: readonly Value[], attrs: Attrs = {}, opts: EmitOptions = {}): Value {
    return this.emit(op, inputs, attrs, opts)[0]!;
  }

  private own(v: Value, what: string): void {
    if (v.graph !== this) throw new GraphError(`${what}: unknown input ${v} (it belongs to another graph)`);
  }

  private claim(name: string, what: string): void {
    if (this.names.has(name))
      throw new GraphError(`${what} '${name}': name already used in graph '${this.options.name}'`);
    this.names.add(name);
  }

  private unique(base: string): string {
    let name = base;
    for (let i = 1; this.names.has(name); i++) name = `${base}_${i}`;
    this.names.add(name);
    return name;
  }
}

export const IDENTITY: OpDef = {
  type: 'Identity',
  infer: ([x]) => [{ dtype: x!.dtype, shape: x!.shape }],
  vjp: ({ grads }) => [grads[0]],
};

export function typedOf(dtype: DType, xs: readonly number[]): TypedData {
  switch (dtype) {
    case 'float32':
      return Float32Array.from(xs);
    case 'float64':
      return Float64Array.from(xs);
    case 'int64':
      return BigInt64Array.from(xs, (x) => BigInt(x));
    case 'int32':
      return Int32Array.from(xs);
    case 'uint8':
    case 'bool':
      return Uint8Array.from(xs);
    case 'float16':
      throw new GraphError('float16 constants must be given as raw Uint16Array data');
  }
}

export function isFloat(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64' || dtype === 'float16';
}
