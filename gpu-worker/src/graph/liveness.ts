import type { Graph } from './builder.ts';

// Which nodes of a graph reach its outputs, and what each reads, as the model file will have them.

/** The inputs a node has in ONNX (autodiff's bookkeeping inputs of customGrad nodes are not). */
export function onnxInputs(n: Graph['nodes'][number]): Graph['nodes'][number]['inputs'] {
  return n.inputs.slice(0, n.op.onnxInputs ?? n.inputs.length);
}

/**
 * The nodes some graph output depends on, in order. Others are dropped rather than left to run:
 * onnxruntime executes every node, and an unused one holds its inputs to the end of the run (a
 * recomputed block's last product is never read; its input would outlive the block's backward).
 * A node with a body keeps whatever the body reads from the enclosing graph. Initializers no kept
 * node reads are left out with them.
 */
export function liveNodes(graph: Graph): { nodes: Graph['nodes']; used: Set<string> } {
  const used = new Set<string>(graph.outputs.map((v) => v.name));
  const live: boolean[] = new Array(graph.nodes.length).fill(false);
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const n = graph.nodes[i]!;
    if (!n.outputs.some((v) => used.has(v.name))) continue;
    live[i] = true;
    for (const v of onnxInputs(n)) used.add(v.name);
    for (const body of bodies(n)) for (const name of namesRead(body)) used.add(name);
  }
  return { nodes: graph.nodes.filter((_, i) => live[i]), used };
}

/** Every value name a body's nodes (and their bodies) read. */
export function namesRead(graph: Graph): string[] {
  return graph.nodes.flatMap((n) => [...onnxInputs(n).map((v) => v.name), ...bodies(n).flatMap(namesRead)]);
}

/** The graphs a node's attributes hold (If's branches, Scan's and Loop's bodies). */
export function bodies(n: Graph['nodes'][number]): Graph[] {
  return Object.values(n.attrs).flatMap((a) =>
    a && typeof a === 'object' && 'subgraph' in a ? [a.subgraph] : [],
  );
}
