export { customGrad, grad, recompute, STOP_GRADIENT, stopGradient, zerosLike } from './autodiff.ts';
export {
  type Attrs,
  type DType,
  type EmitOptions,
  type ExternalRef,
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
export { inPlaceProblems } from './in-place.ts';
export { initializerCopier, inlineGraph, inlineNodes } from './inline.ts';
export * from './models/index.ts';
export * from './nn/index.ts';
export * from './ops/index.ts';
export {
  ADAMW_DEFAULTS,
  type AdamWOptions,
  type AdamWSlot,
  type AdamWUpdate,
  adamw,
  adamwOptions,
  clipByGlobalNorm,
  decaysByDefault,
  globalNormClip,
} from './optim.ts';
export { dumpGraph, ExternalDataWriter, saveModel, toModelBytes } from './serialize.ts';
export {
  type BatchSpec,
  buildGradAccumulation,
  buildTrainStep,
  type LossFn,
  nextName,
  type ParamDType,
  type ParamSpec,
  type TrainLayout,
  type TrainStepSpec,
  trainLayout,
} from './train-step.ts';
