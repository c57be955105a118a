export { add, addScalar, div, mul, neg, scale, sub } from './arith.ts';
export { cast, toHalfClamped } from './cast.ts';
export { type IfSpec, ifElse, padRuntime, type ScanSpec, scan, sliceRuntime } from './control.ts';
export { gather } from './gather.ts';
export { gatherElements } from './gather-elements.ts';
export { bitwiseXor, logicalAnd, logicalNot, logicalOr, mod, range } from './integer.ts';
export { type MatMulOptions, matmul } from './matmul.ts';
export {
  type AccuracyLevel,
  type GatherBlockQuantizedOptions,
  gatherBlockQuantized,
  type MatMulNBitsOptions,
  matmulNBits,
  type QuantizedWeights,
} from './quantized.ts';
export { type ReduceOptions, reduceMax, reduceMean, reduceSum, reduceSumSquare } from './reduce.ts';
export {
  after,
  concat,
  expand,
  expandAs,
  reshape,
  reshapeAs,
  shapeOf,
  sizeOf,
  slice,
  split,
  squeeze,
  transpose,
  unsqueeze,
} from './shape.ts';
export { logSoftmax, softmax } from './softmax.ts';
export { softmaxCrossEntropy } from './softmax-cross-entropy.ts';
export { cos, sin } from './trig.ts';
export {
  abs,
  equal,
  erf,
  exp,
  greater,
  less,
  log,
  pow,
  reciprocal,
  relu,
  sigmoid,
  sqrt,
  tanh,
  where,
} from './unary.ts';
