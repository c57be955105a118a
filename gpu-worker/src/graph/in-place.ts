import type { Graph, Node, Value } from './builder.ts';
import { bodies, liveNodes, namesRead, onnxInputs } from './liveness.ts';

/**
 * Whether a training model may write each `<input>.next` output straight into its input's buffer
 * (a runner that hands the input tensors to onnxruntime as pre-allocated outputs): that holds when
 * every node that reads a state input runs before the node that computes its next value, in any
 * order onnxruntime may choose, i.e. every reader is that node or one of its ancestors. Judged on
 * the nodes the model file keeps (`liveNodes`) and what each reads there, bodies included.
 *
 * Returns the problems, empty when it is safe. The built training steps pass by construction:
 * `adamw` makes every update wait for the loss and every gradient.
 */
export function inPlaceProblems(g: Graph, next: Readonly<Record<string, string>>): string[] {
  const nodes = liveNodes(g).nodes;
  const index = new Map(nodes.map((n, i) => [n, i]));
  const pairs = Object.entries(next).flatMap(([input, output]) => {
    const out = g.outputs.find((v) => v.name === output);
    const inp = g.inputs.find((v) => v.name === input);
    return out && inp ? [{ input: inp, writer: computingNode(out) }] : [];
  });
  if (pairs.length === 0) return [];

  // reach[n]: the pairs whose writer is node n or one of its descendants, one bit each.
  const words = Math.ceil(pairs.length / 32);
  const reach = new Uint32Array(nodes.length * words);
  pairs.forEach((p, k) => {
    const at = p.writer ? index.get(p.writer) : undefined;
    if (at !== undefined) reach[at * words + (k >> 5)]! |= 1 << (k & 31);
  });
  const byName = new Map<string, Value>(
    [...g.inputs, ...g.initializers.map((i) => i.value), ...nodes.flatMap((n) => n.outputs)].map((v) => [
      v.name,
      v,
    ]),
  );
  const reads = nodes.map((n) => readsOf(n, byName));
  for (let i = nodes.length - 1; i >= 0; i--) {
    for (const v of reads[i]!) {
      const from = v.producer ? index.get(v.producer) : undefined;
      if (from === undefined) continue;
      for (let w = 0; w < words; w++) reach[from * words + w]! |= reach[i * words + w]!;
    }
  }

  const readers = new Map<Value, number[]>(pairs.map((p) => [p.input, []])); // state input -> nodes
  reads.forEach((vs, i) => {
    for (const v of vs) readers.get(v)?.push(i);
  });
  const problems: string[] = [];
  pairs.forEach((p, k) => {
    if (p.writer === undefined || !index.has(p.writer)) {
      problems.push(`'${p.input.name}': no node of the model computes its next value`);
      return;
    }
    const late = readers.get(p.input)!.filter((i) => ((reach[i * words + (k >> 5)]! >>> (k & 31)) & 1) === 0);
    if (late.length)
      problems.push(
        `'${p.input.name}' is read by ${nodes[late[0]!]!.name}${late.length > 1 ? ` (and ${late.length - 1} more)` : ''}, ` +
          `which need not run before ${p.writer.name} writes its next value`,
      );
  });
  return problems;
}

/** The node that computes a value, looking through the Identity nodes that name graph outputs. */
function computingNode(v: Value): Node | undefined {
  let node = v.producer;
  while (node && node.op.type === 'Identity' && node.inputs[0]?.producer) node = node.inputs[0].producer;
  return node;
}

/** A node's ONNX inputs, and the enclosing graph's values its bodies (Scan, Loop) read by name. */
function readsOf(n: Node, byName: ReadonlyMap<string, Value>): Value[] {
  const outer = bodies(n)
    .flatMap(namesRead)
    .flatMap((name) => {
      const v = byName.get(name);
      return v ? [v] : [];
    });
  return [...new Set([...onnxInputs(n), ...outer])];
}
