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
export { buildSideInferenceGraph, SIDE_IO, type SideTrainOptions, sideTrainSpec } from './steps.ts';
