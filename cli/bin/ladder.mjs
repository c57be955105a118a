#!/usr/bin/env node
// `npx ladder ...`: the CLI is TypeScript run as is, so register tsx's loader before importing it.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/main.ts');
process.exitCode = await main(process.argv.slice(2));
