import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { StringStringEntryProtoSchema, type TensorProto, TensorProto_DataLocation } from 'onnx-buf';
import type { Attrs, Graph, Initializer } from './builder.ts';
import { shapeStr } from './dims.ts';
import { encodeModel, node, tensorProto, valueInfo } from './proto.ts';

export interface SerializeOptions {
  /** Initializers at least this many bytes go to the external data file (when saving to a path). */
  externalThreshold: number;
}

const DEFAULTS: SerializeOptions = { externalThreshold: 1024 * 1024 };

function onnxAttrs(attrs: Attrs): Attrs {
  return Object.fromEntries(Object.entries(attrs).filter(([k, v]) => !k.startsWith('__') && v !== undefined));
}

function modelParts(graph: Graph, initializers: TensorProto[]) {
  return {
    name: graph.options.name,
    opsets: graph.options.opsets,
    nodes: graph.nodes.map((n) =>
      node(
        n.op.type,
        n.inputs.map((v) => v.name),
        n.outputs.map((v) => v.name),
        onnxAttrs(n.attrs),
        { name: n.name, domain: n.op.domain ?? '' },
      ),
    ),
    inputs: graph.inputs.map((v) => valueInfo(v.name, v.dtype, v.shape)),
    outputs: graph.outputs.map((v) => valueInfo(v.name, v.dtype, v.shape)),
    initializers,
  };
}

function inline(init: Initializer): TensorProto {
  return tensorProto(init.value.name, init.value.dtype, init.dims, init.data);
}

/** The whole model in memory (every initializer inline). */
export function toModelBytes(graph: Graph): Uint8Array {
  return encodeModel(modelParts(graph, graph.initializers.map(inline)));
}

/**
 * Write `path` (the model) and, for large initializers, `path + '.data'` (external data, which
 * onnxruntime loads only when the model is opened by its path). Both files are written to a
 * temporary name, fsynced and renamed, so a reader never sees half a model.
 */
export function saveModel(graph: Graph, path: string, opts: Partial<SerializeOptions> = {}): void {
  const o = { ...DEFAULTS, ...opts } satisfies SerializeOptions;
  const dataPath = `${path}.data`;
  let fd: number | undefined;
  let offset = 0;
  const tensors = graph.initializers.map((init) => {
    if (init.data.byteLength < o.externalThreshold) return inline(init);
    if (fd === undefined) fd = openSync(`${dataPath}.tmp`, 'w');
    const pad = (64 - (offset % 64)) % 64; // keep tensors aligned for mmap
    if (pad) writeSync(fd, new Uint8Array(pad));
    offset += pad;
    const bytes = new Uint8Array(init.data.buffer, init.data.byteOffset, init.data.byteLength);
    writeSync(fd, bytes);
    const t = tensorProto(init.value.name, init.value.dtype, init.dims, new Uint8Array(0));
    t.dataLocation = TensorProto_DataLocation.EXTERNAL;
    t.externalData = [
      ['location', basename(dataPath)],
      ['offset', String(offset)],
      ['length', String(bytes.byteLength)],
    ].map(([key, value]) => create(StringStringEntryProtoSchema, { key, value }));
    offset += bytes.byteLength;
    return t;
  });
  if (fd !== undefined) {
    fsyncSync(fd);
    closeSync(fd);
    renameSync(`${dataPath}.tmp`, dataPath);
  }
  const model = encodeModel(modelParts(graph, tensors));
  const mfd = openSync(`${path}.tmp`, 'w');
  writeSync(mfd, model);
  fsyncSync(mfd);
  closeSync(mfd);
  renameSync(`${path}.tmp`, path);
}

/** A readable listing: inputs, initializers (by size), then one line per node. */
export function dumpGraph(graph: Graph): string {
  const lines = [`graph ${graph.options.name} (opsets ${JSON.stringify(graph.options.opsets)})`];
  for (const v of graph.inputs) lines.push(`  input  ${v}`);
  for (const i of graph.initializers) {
    const head = i.data.length <= 4 ? ` = ${Array.from(i.data as ArrayLike<number>).join(', ')}` : '';
    lines.push(`  init   ${i.value}${head}`);
  }
  for (const n of graph.nodes) {
    const attrs = Object.entries(onnxAttrs(n.attrs))
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(' ');
    const outs = n.outputs.map((v) => `%${v.name}: ${v.dtype}${shapeStr(v.shape)}`).join(', ');
    const ins = n.inputs.map((v) => `%${v.name}`).join(', ');
    lines.push(
      `  ${outs} = ${n.op.domain ? `${n.op.domain}.` : ''}${n.op.type}(${ins})${attrs ? ` {${attrs}}` : ''}`,
    );
  }
  for (const v of graph.outputs) lines.push(`  output ${v}`);
  return lines.join('\n');
}
