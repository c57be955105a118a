// `npm start`: the platform on its embedded defaults, every process bound to 127.0.0.1.
// Today that is the edge (workerd via `wrangler dev --local`) and one GPU worker on the CPU;
// training, serving and the seeded development tenant arrive with the later issues.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name: string) => join(root, 'node_modules', '.bin', name);
const edgePort = Number(process.env.LADDER_EDGE_PORT ?? 8787);
const workerPort = Number(process.env.LADDER_WORKER_PORT ?? 8788);
const stateDir = join(root, '.data', 'edge-state');
mkdirSync(stateDir, { recursive: true });

const children: ChildProcess[] = [];
function launch(label: string, cmd: string, args: string[], env: Record<string, string>): void {
  const child = spawn(cmd, args, {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const prefix = (chunk: Buffer) =>
    chunk
      .toString()
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => `[${label}] ${l}`)
      .join('\n');
  child.stdout?.on('data', (c: Buffer) => console.log(prefix(c)));
  child.stderr?.on('data', (c: Buffer) => console.error(prefix(c)));
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`[${label}] exited (${signal ?? code}); stopping the platform`);
      stop(1);
    }
  });
  children.push(child);
}

let stopping = false;
function stop(code = 0): void {
  if (stopping) return;
  stopping = true;
  for (const c of children) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 1500).unref();
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

launch('gpu-worker', bin('tsx'), ['gpu-worker/src/main.ts'], {
  LADDER_WORKER_HOST: '127.0.0.1',
  LADDER_WORKER_PORT: String(workerPort),
});
launch(
  'edge',
  bin('wrangler'),
  [
    'dev',
    '--local',
    '--ip',
    '127.0.0.1',
    '--port',
    String(edgePort),
    '--persist-to',
    stateDir,
    '-c',
    'edge/wrangler.jsonc',
  ],
  { WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false' },
);

console.log(
  [
    'Ladder is starting on embedded defaults:',
    `  edge (public API)  http://127.0.0.1:${edgePort}   GET /healthz`,
    `  gpu-worker         http://127.0.0.1:${workerPort}   GET /healthz`,
    'Not yet in this build: training, inference, tenants and API keys (see the open issues).',
    'Ctrl-C stops every process started here.',
  ].join('\n'),
);
