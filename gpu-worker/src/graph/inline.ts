import { type Attrs, Graph, GraphError, type Initializer, type Node, type Value } from './builder.ts';

/**
 * Re-emit every node of `src` into `g` under g's current path, its inputs bound by `bind`, its
 * initializers shared (the data is not copied), its outputs dropped. Returns the map from src
 * values to g's. Bodies of Scan nodes are copied too, their references to enclosing values
 * re-pointed at g's. What this is for: a graph built on its own (the backbone, whose weights
 * stream in asynchronously) becomes part of a training step built synchronously.
 */
export function inlineGraph(g: Graph, src: Graph, bind: (input: Value) => Value): (v: Value) => Value {
  const bound = new Map(src.inputs.map((v) => [v, bind(v)]));
  const initializer = initializerCopier(g, src);
  return inlineNodes(g, src, src.nodes, (v) => {
    const found = initializer(v) ?? bound.get(v);
    if (!found) throw new GraphError(`inline: ${v} of graph '${src.options.name}' has no producer`);
    return found;
  });
}

/**
 * Re-emit `nodes` (some of src's, in src's order) into g. Whatever they read but do not make comes
 * from `free`: src's inputs, its initializers (initializerCopier), values of the nodes left out.
 * For a piece of a graph emitted more than once: activation checkpointing re-emits a block in the
 * backward (the QLoRA baseline's per-block recompute). Returns the map from src values to g's.
 */
export function inlineNodes(
  dst: Graph,
  src: Graph,
  nodes: readonly Node[],
  free: (v: Value) => Value,
): (v: Value) => Value {
  const map = new Map<Value, Value>();
  const outputs = new Set(src.outputs);
  const get = (v: Value): Value => {
    const found = map.get(v);
    if (found) return found;
    const made = free(v);
    map.set(v, made);
    return made;
  };
  const base = dst.path === '/' ? '' : dst.path;
  for (const node of nodes) {
    const out = node.outputs[0]!;
    if (outputs.has(out)) {
      map.set(out, get(node.inputs[0]!)); // a graph output's Identity
      continue;
    }
    const attrs: Attrs = {};
    for (const [k, a] of Object.entries(node.attrs)) {
      attrs[k] =
        typeof a === 'object' && a !== null && 'subgraph' in a
          ? { subgraph: copyBody(a.subgraph, src, get) }
          : a;
    }
    const cut = node.name.lastIndexOf('/');
    const made = dst.withPath(`${base}${node.name.slice(0, cut)}`, () =>
      dst.emit(node.op, node.inputs.map(get), attrs, {
        name: node.name.slice(cut + 1),
        hints: node.outputs.map((o) => o.shape),
      }),
    );
    for (const [i, o] of node.outputs.entries()) map.set(o, made[i]!);
  }
  return get;
}

/** A copy of a body graph whose enclosing-scope references (values of `parent`) go through `outer`. */
function copyBody(body: Graph, parent: Graph, outer: (v: Value) => Value): Graph {
  const b = new Graph(body.options);
  const inputs = new Map(body.inputs.map((v) => [v, b.input(v.name, v.dtype, v.shape)]));
  const initializer = initializerCopier(b, body);
  const get = inlineNodes(
    b,
    body,
    body.nodes,
    (v) => initializer(v) ?? inputs.get(v) ?? b.outer(outer(parent.get(v.name))),
  );
  for (const out of body.outputs) b.output(get(out), out.name);
  return b;
}

/** src's initializers as dst's, each copied on first use and shared after; undefined for any other value. */
export function initializerCopier(dst: Graph, src: Graph): (v: Value) => Value | undefined {
  const inits = new Map(src.initializers.map((i) => [i.value, i]));
  const copied = new Map<Value, Value>();
  return (v) => {
    const init = inits.get(v);
    if (!init) return undefined;
    let made = copied.get(v);
    if (!made) {
      made = copyInitializer(dst, init);
      copied.set(v, made);
    }
    return made;
  };
}

function copyInitializer(dst: Graph, init: Initializer): Value {
  const v = init.value;
  if (v.constData) return dst.constant(v.dtype, init.dims, init.data);
  return init.external
    ? dst.externalInitializer(v.name, v.dtype, init.dims, init.external)
    : dst.initializer(v.name, v.dtype, init.dims, init.data);
}
