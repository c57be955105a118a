export {
  addQuantizedWeights,
  type PlaceInitializer,
  type QuantizedLayout,
  type QuantizedLinearOptions,
  quantizedEmbedding,
  quantizedLinear,
} from './graph.ts';
export { dequantizeLinear, QUANTIZE_DEFAULTS, type QuantizeOptions, quantizeLinear } from './quantize.ts';
