export {
  BackboneStepper,
  type FinishReason,
  type GenerationHooks,
  type GenerationRequest,
  type GenerationResult,
  generate,
  type KvCache,
  lastRows,
  type StepInput,
  type StepOutput,
  type Stepper,
} from './generator.ts';
export { argmax, SAMPLING_DEFAULTS, type SamplingParams, sampleToken } from './sampling.ts';
export { StopWatcher } from './stop.ts';
