import { create, toBinary } from '@bufbuild/protobuf';
import {
  type AttributeProto,
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  type GraphProto,
  GraphProtoSchema,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  type TensorProto,
  TensorProto_DataType,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  type ValueInfoProto,
  ValueInfoProtoSchema,
} from 'onnx-buf';

/** The element types the engine uses, by their ONNX names. */
export type DType = 'float32' | 'float64' | 'float16' | 'int64' | 'int32' | 'uint8' | 'bool';

export const ONNX_DTYPE: Record<DType, TensorProto_DataType> = {
  float32: TensorProto_DataType.FLOAT,
  float64: TensorProto_DataType.DOUBLE,
  float16: TensorProto_DataType.FLOAT16,
  int64: TensorProto_DataType.INT64,
  int32: TensorProto_DataType.INT32,
  uint8: TensorProto_DataType.UINT8,
  bool: TensorProto_DataType.BOOL,
};

/** A dimension is a fixed size or a named dynamic one (`batch`, `seq`). */
export type Dim = number | string;

export type AttrValue =
  | number
  | string
  | number[]
  | string[]
  | { float: number }
  | { floats: number[] }
  | { graph: GraphProto }
  | TensorProto;

export function valueInfo(name: string, dtype: DType, shape: readonly Dim[]): ValueInfoProto {
  const dims = shape.map((d) =>
    create(
      TensorShapeProto_DimensionSchema,
      typeof d === 'number'
        ? { value: { case: 'dimValue', value: BigInt(d) } }
        : { value: { case: 'dimParam', value: d } },
    ),
  );
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: 'tensorType',
        value: create(TypeProto_TensorSchema, {
          elemType: ONNX_DTYPE[dtype],
          shape: create(TensorShapeProtoSchema, { dim: dims }),
        }),
      },
    }),
  });
}

function attribute(name: string, value: AttrValue): AttributeProto {
  const T = AttributeProto_AttributeType;
  if (typeof value === 'number') {
    return create(AttributeProtoSchema, { name, type: T.INT, i: BigInt(value) });
  }
  if (typeof value === 'string') {
    return create(AttributeProtoSchema, { name, type: T.STRING, s: new TextEncoder().encode(value) });
  }
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v === 'number')) {
      return create(AttributeProtoSchema, {
        name,
        type: T.INTS,
        ints: (value as number[]).map((v) => BigInt(v)),
      });
    }
    const enc = new TextEncoder();
    return create(AttributeProtoSchema, {
      name,
      type: T.STRINGS,
      strings: (value as string[]).map((v) => enc.encode(v)),
    });
  }
  if ('float' in value) return create(AttributeProtoSchema, { name, type: T.FLOAT, f: value.float });
  if ('floats' in value) return create(AttributeProtoSchema, { name, type: T.FLOATS, floats: value.floats });
  if ('graph' in value) return create(AttributeProtoSchema, { name, type: T.GRAPH, g: value.graph });
  return create(AttributeProtoSchema, { name, type: T.TENSOR, t: value });
}

export function node(
  opType: string,
  inputs: string[],
  outputs: string[],
  attrs: Record<string, AttrValue> = {},
  opts: { name?: string; domain?: string } = {},
): NodeProto {
  return create(NodeProtoSchema, {
    opType,
    input: inputs,
    output: outputs,
    name: opts.name ?? outputs[0] ?? opType,
    domain: opts.domain ?? '',
    attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
  });
}

type TypedData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array;

/** A tensor stored inline as raw little-endian bytes. */
export function tensorProto(
  name: string,
  dtype: DType,
  dims: readonly number[],
  data: TypedData,
): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dataType: ONNX_DTYPE[dtype],
    dims: dims.map((d) => BigInt(d)),
    rawData: new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength),
  });
}

export interface ModelParts {
  name: string;
  nodes: NodeProto[];
  inputs: ValueInfoProto[];
  outputs: ValueInfoProto[];
  initializers?: TensorProto[];
  /** Opset per domain; the default domain is ''. */
  opsets?: Record<string, number>;
}

export const DEFAULT_OPSETS: Record<string, number> = { '': 23, 'com.microsoft': 1 };

/** A graph as a GraphProto: a model's main graph, or a subgraph attribute (Loop, Scan, If). */
export function graphProto(parts: Omit<ModelParts, 'opsets'>): GraphProto {
  return create(GraphProtoSchema, {
    name: parts.name,
    node: parts.nodes,
    input: parts.inputs,
    output: parts.outputs,
    initializer: parts.initializers ?? [],
  });
}

export function encodeModel(parts: ModelParts): Uint8Array {
  const opsets = parts.opsets ?? DEFAULT_OPSETS;
  const model = create(ModelProtoSchema, {
    irVersion: 10n,
    producerName: 'ladder',
    opsetImport: Object.entries(opsets).map(([domain, version]) =>
      create(OperatorSetIdProtoSchema, { domain, version: BigInt(version) }),
    ),
    graph: graphProto(parts),
  });
  return toBinary(ModelProtoSchema, model);
}
