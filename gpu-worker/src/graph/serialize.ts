import { closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { StringStringEntryProtoSchema, type TensorProto, TensorProto_DataLocation } from 'onnx-buf';
import type { Attrs, ExternalRef, Graph, Initializer, TypedData, Value } from './builder.ts';
import { shapeStr } from './dims.ts';
import { liveNodes, onnxInputs } from './liveness.ts';
import { type AttrValue, encodeModel, graphProto, node, tensorProto, valueInfo } from './proto.ts';

export interface SerializeOptions {
  /** Initializers at least this many bytes go to the external data file (when saving to a path). */
  externalThreshold: number;
}

const DEFAULTS: SerializeOptions = { externalThreshold: 1024 * 1024 };

function onnxAttrs(attrs: Attrs): Record<string, AttrValue> {
  return Object.fromEntries(
    Object.entries(attrs)
      .filter(([k, v]) => !k.startsWith('__') && v !== undefined)
      .map(([k, v]) => [
        k,
        typeof v === 'object' && 'subgraph' in v ? { graph: subgraphProto(v.subgraph) } : v,
      ]),
  );
}

/** A body graph: its own nodes and initializers; values of the enclosing graph by name. */
function subgraphProto(graph: Graph) {
  return graphProto(modelParts(graph, graph.initializers.map(inline)));
}

function modelParts(graph: Graph, initializers: TensorProto[]) {
  const { nodes, used } = liveNodes(graph);
  return {
    name: graph.options.name,
    opsets: graph.options.opsets,
    nodes: nodes.map((n) =>
      node(
        n.op.type,
        onnxInputs(n).map((v) => v.name),
        n.outputs.map((v) => v.name),
        onnxAttrs(n.attrs),
        { name: n.name, domain: n.op.domain ?? '' },
      ),
    ),
    inputs: graph.inputs.map((v) => valueInfo(v.name, v.dtype, v.shape)),
    outputs: graph.outputs.map((v) => valueInfo(v.name, v.dtype, v.shape)),
    initializers: initializers.filter((t) => used.has(t.name)),
  };
}

function inline(init: Initializer): TensorProto {
  if (init.external) {
    const { location, offset, length } = init.external;
    return externalTensor(init, location, offset, length);
  }
  return tensorProto(init.value.name, init.value.dtype, init.dims, init.data);
}

/**
 * Appends tensors to one external data file as a model is built, so that only the tensor being
 * converted is in memory. Pass it to saveModel, which then adds the other large initializers to
 * the same file. The caller makes the whole build atomic (e.g. a temporary directory renamed).
 */
export class ExternalDataWriter {
  private readonly fd: number;
  private offset = 0;
  readonly location: string;

  constructor(readonly path: string) {
    this.location = basename(path);
    this.fd = openSync(path, 'w');
  }

  append(data: TypedData): ExternalRef {
    const pad = (64 - (this.offset % 64)) % 64; // keep tensors aligned for mmap
    if (pad) writeSync(this.fd, new Uint8Array(pad));
    this.offset += pad;
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    for (let done = 0; done < bytes.byteLength; ) done += writeSync(this.fd, bytes, done);
    const ref = { location: this.location, offset: this.offset, length: bytes.byteLength };
    this.offset += bytes.byteLength;
    return ref;
  }

  get bytes(): number {
    return this.offset;
  }

  close(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
  }
}

// A protobuf message cannot exceed 2 GiB; keep a margin for the graph itself.
const PROTOBUF_LIMIT = 2 ** 31 - 1;
const GRAPH_MARGIN = 64 * 1024 * 1024;

/** The whole model in memory (every initializer inline). */
export function toModelBytes(graph: Graph): Uint8Array {
  const held = graph.initializers.find((i) => i.external);
  if (held) {
    throw new Error(
      `toModelBytes: initializer '${held.value.name}' lives in external data '${held.external!.location}'; ` +
        'save the model next to it with saveModel and open it by path',
    );
  }
  const bytes = graph.initializers.reduce((n, i) => n + i.data.byteLength, 0);
  if (bytes > PROTOBUF_LIMIT - GRAPH_MARGIN) {
    throw new Error(
      `toModelBytes: graph '${graph.options.name}' has ${formatBytes(bytes)} of initializers, too much for ` +
        'one protobuf (2 GiB); save it with saveModel, which moves large initializers to external data',
    );
  }
  return encodeModel(modelParts(graph, graph.initializers.map(inline)));
}

/** Write `path` through a temporary file, fsynced, then renamed into place. */
function writeAtomically(path: string, write: (fd: number) => void): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    write(fd);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

/**
 * Write `path` (the model) and, for initializers of at least `externalThreshold` bytes,
 * `path + '.data'` (external data, which onnxruntime loads only when the model is opened by its
 * path). Each file is written to a temporary name, fsynced and renamed, the data first, so a
 * reader never sees half a file. A stale `.data` from an earlier save is removed when nothing
 * goes external.
 */
export function saveModel(
  graph: Graph,
  path: string,
  opts: Partial<SerializeOptions> & { dataWriter?: ExternalDataWriter } = {},
): void {
  const o = { ...DEFAULTS, ...opts } satisfies SerializeOptions;
  if (o.dataWriter) {
    saveWithWriter(graph, path, o.externalThreshold, o.dataWriter);
    return;
  }
  const held = graph.initializers.find((i) => i.external);
  if (held)
    throw new Error(`saveModel: '${held.value.name}' is in external data: pass the ExternalDataWriter`);
  const dataPath = `${path}.data`;
  const external = graph.initializers.filter((i) => i.data.byteLength >= o.externalThreshold);
  const tensors = new Map<Initializer, TensorProto>();
  if (external.length) {
    writeAtomically(dataPath, (fd) => {
      let offset = 0;
      for (const init of external) {
        const pad = (64 - (offset % 64)) % 64; // keep tensors aligned for mmap
        if (pad) writeSync(fd, new Uint8Array(pad));
        offset += pad;
        const bytes = new Uint8Array(init.data.buffer, init.data.byteOffset, init.data.byteLength);
        for (let done = 0; done < bytes.byteLength; ) done += writeSync(fd, bytes, done);
        tensors.set(init, externalTensor(init, basename(dataPath), offset, bytes.byteLength));
        offset += bytes.byteLength;
      }
    });
  } else if (existsSync(dataPath)) {
    rmSync(dataPath);
  }
  const model = encodeModel(
    modelParts(
      graph,
      graph.initializers.map((i) => tensors.get(i) ?? inline(i)),
    ),
  );
  writeAtomically(path, (fd) => {
    for (let done = 0; done < model.byteLength; ) done += writeSync(fd, model, done);
  });
}

function saveWithWriter(graph: Graph, path: string, threshold: number, writer: ExternalDataWriter): void {
  const tensors = graph.initializers.map((i) => {
    if (i.external || i.data.byteLength < threshold) return inline(i);
    const { location, offset, length } = writer.append(i.data);
    return externalTensor(i, location, offset, length);
  });
  writer.close();
  const model = encodeModel(modelParts(graph, tensors));
  writeAtomically(path, (fd) => {
    for (let done = 0; done < model.byteLength; ) done += writeSync(fd, model, done);
  });
}

function externalTensor(init: Initializer, location: string, offset: number, length: number): TensorProto {
  const t = tensorProto(init.value.name, init.value.dtype, init.dims, new Uint8Array(0));
  t.dataLocation = TensorProto_DataLocation.EXTERNAL;
  t.externalData = [
    ['location', location],
    ['offset', String(offset)],
    ['length', String(length)],
  ].map(([key, value]) => create(StringStringEntryProtoSchema, { key, value }));
  return t;
}

// ---------------------------------------------------------------------------------------------
// dumpGraph

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

function typeStr(v: Value): string {
  return `${v.dtype}${shapeStr(v.shape)}`;
}

/** A value made by a node carries the default name `<node>/output_<i>`: write it `<node>` or `<node>:<i>`. */
function ref(v: Value): string {
  const p = v.producer;
  if (p && v.name.startsWith(`${p.name}/output_`)) {
    return p.outputs.length === 1 ? `%${p.name}` : `%${p.name}:${p.outputs.indexOf(v)}`;
  }
  return `%${v.name}`;
}

function attrStr(v: AttrValue): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v))
    return `[${v.map((x) => (typeof x === 'string' ? JSON.stringify(x) : x)).join(', ')}]`;
  if ('float' in v) return String(v.float);
  if ('floats' in v) return `[${v.floats.join(', ')}]`;
  if ('graph' in v) return `<graph ${v.graph.name}: ${v.graph.node.length} nodes>`;
  return `<tensor [${v.dims.join(', ')}]>`;
}

/**
 * A readable listing: inputs, initializers (with sizes), one line per node (its path, op,
 * arguments, attributes and output types), outputs.
 *
 *   /side/layers.3/MatMul  MatMul(%x, %w) -> float32[batch, 64]
 */
export function dumpGraph(graph: Graph): string {
  const total = graph.initializers.reduce((n, i) => n + i.data.byteLength, 0);
  const lines = [`graph ${graph.options.name}  opsets ${JSON.stringify(graph.options.opsets)}`];
  lines.push(`inputs (${graph.inputs.length})`);
  for (const v of graph.inputs) lines.push(`  %${v.name}: ${typeStr(v)}`);
  lines.push(`initializers (${graph.initializers.length}, ${formatBytes(total)})`);
  for (const i of graph.initializers) {
    const small = i.data.length <= 4 && i.value.dtype !== 'float16';
    const head = small ? ` = ${Array.from(i.data as ArrayLike<number>).join(', ')}` : '';
    lines.push(`  %${i.value.name}: ${typeStr(i.value)}${head}  (${formatBytes(i.data.byteLength)})`);
  }
  lines.push(`nodes (${graph.nodes.length}; a node's outputs are named <node>/output_<i>, here <node>[:i])`);
  for (const n of graph.nodes) {
    const attrs = Object.entries(onnxAttrs(n.attrs))
      .map(([k, v]) => `${k}=${attrStr(v)}`)
      .join(' ');
    const outs = n.outputs.map((v) => (ref(v) === `%${v.name}` ? `%${v.name}: ${typeStr(v)}` : typeStr(v)));
    const op = `${n.op.domain ? `${n.op.domain}.` : ''}${n.op.type}`;
    lines.push(
      `  ${n.name}  ${op}(${n.inputs.map(ref).join(', ')})${attrs ? ` {${attrs}}` : ''} -> ${
        outs.length === 1 ? outs[0] : `(${outs.join(', ')})`
      }`,
    );
  }
  lines.push(`outputs (${graph.outputs.length})`);
  for (const v of graph.outputs) lines.push(`  %${v.name}: ${typeStr(v)}`);
  return lines.join('\n');
}
