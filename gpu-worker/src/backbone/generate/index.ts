export {
  BackboneStepper,
  type FinishReason,
  type GenerationHooks,
  type GenerationRequest,
  type GenerationResult,
  generate,
  type KvCache,
  type StepInput,
  type StepOutput,
} from './generator.ts';
export { argmax, SAMPLING_DEFAULTS, type SamplingParams, sampleToken } from './sampling.ts';
export { StopWatcher } from './stop.ts';
