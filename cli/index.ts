export type { CliIo, Output } from './src/io.ts';
export { main } from './src/main.ts';
