// `npm run bench -- <name>` runs bench/<name>.bench.ts in its own process (so peak memory is its
// own); `npm run bench -- list` lists them. Each benchmark prints one JSON object as its last line.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const benches = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .map((f) => f.slice(0, -'.bench.ts'.length))
  .sort();

function summary(name: string): string {
  const first = readFileSync(join(here, `${name}.bench.ts`), 'utf8').split('\n')[0] ?? '';
  return first.replace(/^\/\/\s*/, '');
}

const [name, ...rest] = process.argv.slice(2);
if (!name || name === 'list') {
  for (const b of benches) console.log(`${b.padEnd(16)} ${summary(b)}`);
  process.exit(name ? 0 : 1);
}
if (!benches.includes(name)) {
  console.error(`unknown benchmark '${name}'; known: ${benches.join(', ')}`);
  process.exit(2);
}
const tsx = join(here, '..', 'node_modules', '.bin', 'tsx');
const child = spawnSync(tsx, [join(here, `${name}.bench.ts`), ...rest], { stdio: 'inherit' });
process.exit(child.status ?? 1);
