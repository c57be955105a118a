export { grad, STOP_GRADIENT, stopGradient, zerosLike } from './autodiff.ts';
export {
  type Attrs,
  type DType,
  type EmitOptions,
  Graph,
  GraphError,
  type GraphOptions,
  isFloat,
  Node,
  type OpDef,
  type TypedData,
  Value,
  type VjpContext,
} from './builder.ts';
export { type Dim, type Shape, shapeStr } from './dims.ts';
export * from './ops/index.ts';
export { dumpGraph, saveModel, toModelBytes } from './serialize.ts';
