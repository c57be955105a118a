export {
  CAUSAL_LM_BATCH,
  type CausalLMConfig,
  causalLMLogits,
  causalLMLoss,
  causalLMParams,
  causalLMTrainFlopsPerToken,
  initCausalLM,
  type ParamSpec as CausalLMParamSpec,
} from './causal-lm.ts';
