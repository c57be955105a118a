export { Backbone, type Completion, type OpenBackboneOptions } from './backbone.ts';
export {
  type BackboneBuild,
  BUILD_FORMAT,
  type BuildMeta,
  type BuildOptions,
  buildBackbone,
} from './build.ts';
export * from './checkpoint/index.ts';
export * from './generate/index.ts';
export {
  BACKBONE_GRAPH_DEFAULTS,
  type BackboneGraphOptions,
  buildBackboneGraph,
  IO as BACKBONE_IO,
  type LayerReport,
  type LinearKernel,
} from './graph/emit.ts';
export { ropeInverseFrequencies } from './graph/rope.ts';
export * from './quant/index.ts';
export * from './tokenizer/index.ts';
export * from './types.ts';
