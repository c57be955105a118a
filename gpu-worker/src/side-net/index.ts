export {
  lstPreset,
  resolveSideNet,
  type SideNetShape,
  xladderPreset,
} from './config.ts';
export { type AdapterCache, AdapterStepper, adapterTensors } from './generate.ts';
export { type SideInputs, type SideOutputs, sideForward } from './graph.ts';
export { defaultChunk, type LmLossOptions, lmHeadCrossEntropy } from './loss.ts';
export { initSideNet, type SideParam, sideNetParams } from './params.ts';
export { prunedSideNetInit } from './prune.ts';
export {
  buildQloraTrainStep,
  LORA_TARGETS,
  type LoraTarget,
  loraName,
  QLORA_DEFAULTS,
  QLORA_IO,
  type QloraOptions,
  type QloraSpec,
  qloraSpec,
} from './qlora.ts';
export {
  buildSideInferenceGraph,
  SIDE_IO,
  SIDE_METRICS,
  type SideTrainOptions,
  sideTrainSpec,
  TRAINING_TAP_DTYPE,
} from './steps.ts';
export * from './trainer/index.ts';
