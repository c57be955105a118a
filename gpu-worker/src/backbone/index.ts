export * from './checkpoint/index.ts';
export * from './quant/index.ts';
export * from './types.ts';
