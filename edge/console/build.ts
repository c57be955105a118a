// Bundles the console (src/main.ts, Preact + htm + uPlot from node_modules) into public/assets,
// which edge/wrangler.jsonc serves as Workers static assets. Wrangler runs this before `dev` and
// `deploy` (its `build.command`); nothing is fetched from a CDN at run time.
import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
export const ASSETS_DIR = join(here, 'public', 'assets');

export async function buildConsole(): Promise<void> {
  mkdirSync(ASSETS_DIR, { recursive: true });
  await build({
    entryPoints: [join(here, 'src', 'main.ts')],
    outfile: join(ASSETS_DIR, 'console.js'),
    bundle: true,
    format: 'esm',
    target: 'es2022',
    minify: true,
    legalComments: 'eof',
    logLevel: 'warning',
  });
  const require = createRequire(import.meta.url);
  copyFileSync(require.resolve('uplot/dist/uPlot.min.css'), join(ASSETS_DIR, 'uPlot.min.css'));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await buildConsole();
