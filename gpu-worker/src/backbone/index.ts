export * from './quant/index.ts';
export * from './types.ts';
