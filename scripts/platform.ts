// The whole platform as local processes on 127.0.0.1: the edge in workerd (`wrangler dev --local`)
// and one GPU worker on the CPU. `npm start` runs it in the foreground; the end-to-end test runs
// the same thing on free ports in a temporary folder.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTinyCheckpoint } from '../gpu-worker/src/backbone/dev/tiny-checkpoint.ts';
import { MALLOC_ENV } from '../gpu-worker/src/runtime/memory.ts';
import { DEV_SIGNING_SECRET, deriveWorkerSecret } from '../schemas/index.ts';
import { type Supervised, type SuperviseOptions, supervise } from './supervise.ts';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name: string) => join(ROOT, 'node_modules', '.bin', name);

/** Must match edge/.dev.vars (production sets real secrets). */
const DEV_ADMIN_TOKEN = 'dev-admin-token';
export const DEFAULT_BACKBONE_NAME = 'ladder-tiny';
/** The pretrained default backbone committed to the repo (scripts/pretrain; models/ladder-base/README.md). */
export const PRETRAINED_BACKBONE = { name: 'ladder-base', dir: join(ROOT, 'models', 'ladder-base') } as const;

export interface PlatformOptions {
  /** Folder for everything the platform keeps: edge state, worker data, build cache. */
  dataDir: string;
  edgePort: number; // 0 = a free port
  workerPort: number; // 0 = a free port
  /** A Hugging Face model directory; absent: a small random checkpoint generated on first start. */
  backboneDir?: string | undefined;
  backboneName: string;
  /** Extra worker environment (LADDER_* settings). */
  workerEnv?: Record<string, string>;
  log?: (line: string) => void;
  /** How the worker is restarted when it dies (scripts/supervise.ts). */
  restart?: Partial<SuperviseOptions>;
}

export interface Platform {
  edgeUrl: string;
  workerUrl: string;
  backboneDir: string;
  backboneName: string;
  adminToken: string;
  stop(): Promise<void>;
  /**
   * Resolves if the edge exits on its own (a crash), or the worker keeps crashing after restarts,
   * with its name. A worker that dies is restarted with backoff and resumes its jobs.
   */
  exited: Promise<string>;
  /** The supervised GPU worker: its current process id and how often it was restarted. */
  worker: { pid(): number | undefined; restarts(): number; onRestart(fn: () => void): void };
}

export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

/** The default backbone: generated once (random weights, a real tokenizer), then reused. */
export async function ensureDevBackbone(dataDir: string, log: (l: string) => void): Promise<string> {
  const dir = join(dataDir, 'backbones', DEFAULT_BACKBONE_NAME);
  if (existsSync(join(dir, 'config.json')) && existsSync(join(dir, 'model.safetensors'))) return dir;
  log(`generating the default backbone (a small random Llama-style checkpoint) in ${dir}`);
  await writeTinyCheckpoint(dir, {
    architecture: 'llama',
    hidden: 128,
    layers: 4,
    heads: 4,
    kvHeads: 2,
    intermediate: 352,
    seed: 7,
  });
  return dir;
}

async function waitFor(url: string, ms: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  let last = '';
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`${url}: the process exited before answering`);
    try {
      const res = await fetch(url);
      if (res.ok) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} did not become ready in ${ms / 1000} s (${last})`);
}

export async function startPlatform(opts: PlatformOptions): Promise<Platform> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const edgePort = opts.edgePort || (await freePort());
  const workerPort = opts.workerPort || (await freePort());
  const edgeUrl = `http://127.0.0.1:${edgePort}`;
  const workerUrl = `http://127.0.0.1:${workerPort}`;
  const backboneDir = opts.backboneDir ? resolve(opts.backboneDir) : await ensureDevBackbone(dataDir, log);
  const edgeState = join(dataDir, 'edge-state');
  const wranglerEnv = {
    ...process.env,
    WRANGLER_SEND_METRICS: 'false',
    CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  };
  const config = join(ROOT, 'edge', 'wrangler.jsonc');

  // D1 migrations into the local state before the edge starts.
  const migrate = spawnSync(
    bin('wrangler'),
    ['d1', 'migrations', 'apply', 'DB', '--local', '--persist-to', edgeState, '-c', config],
    { cwd: ROOT, env: { ...wranglerEnv, CI: 'true' }, encoding: 'utf8' },
  );
  if (migrate.status !== 0)
    throw new Error(`applying D1 migrations failed:\n${migrate.stderr || migrate.stdout}`);

  const children: { name: string; proc: ChildProcess }[] = [];
  let stopping = false;
  let onExit: (name: string) => void = () => {};
  const exited = new Promise<string>((r) => {
    onExit = r;
  });
  let supervised: Supervised | undefined;
  const launch = (name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, restarts = false) => {
    const proc = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const relay = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) if (line.trim()) log(`[${name}] ${line}`);
    };
    proc.stdout?.on('data', relay);
    proc.stderr?.on('data', relay);
    proc.on('exit', () => {
      if (!stopping && !restarts) onExit(name);
    });
    children.push({ name, proc });
    return proc;
  };
  const stop = async () => {
    stopping = true;
    supervised?.halt();
    await Promise.all(
      children.map(
        ({ proc }) =>
          new Promise<void>((done) => {
            if (proc.exitCode !== null || proc.signalCode !== null) return done();
            proc.once('exit', () => done());
            try {
              process.kill(-proc.pid!, 'SIGTERM'); // the whole process group (wrangler spawns workerd)
            } catch {
              done();
            }
            setTimeout(() => {
              try {
                process.kill(-proc.pid!, 'SIGKILL');
              } catch {}
              done();
            }, 5000).unref();
          }),
      ),
    );
  };

  try {
    const edge = launch(
      'edge',
      bin('wrangler'),
      [
        'dev',
        '--local',
        '--ip',
        '127.0.0.1',
        '--port',
        String(edgePort),
        '--inspector-port',
        String(await freePort()),
        '--persist-to',
        edgeState,
        '-c',
        config,
        '--var',
        `PUBLIC_BASE_URL:${edgeUrl}`,
        '--show-interactive-dev-session=false',
      ],
      wranglerEnv,
    );
    // The worker's own credential, derived from the edge's development master as the edge derives it.
    const workerId = opts.workerEnv?.LADDER_WORKER_ID ?? process.env.LADDER_WORKER_ID ?? 'worker-local';
    const workerSecret =
      process.env.LADDER_WORKER_SECRET ?? (await deriveWorkerSecret(DEV_SIGNING_SECRET, workerId));
    // One Node process (tsx as a loader, not a wrapper), so a signal reaches the worker itself.
    const workerEnv = {
      ...MALLOC_ENV,
      ...process.env,
      LADDER_WORKER_HOST: '127.0.0.1',
      LADDER_WORKER_PORT: String(workerPort),
      LADDER_WORKER_URL: workerUrl,
      LADDER_BACKBONE_DIR: backboneDir,
      LADDER_BACKBONE_NAME: opts.backboneName,
      LADDER_CACHE_DIR: join(dataDir, 'build-cache'),
      LADDER_DATA_DIR: join(dataDir, 'worker'),
      LADDER_WORKER_ID: workerId,
      LADDER_WORKER_SECRET: workerSecret,
      LADDER_EDGE_URL: edgeUrl,
      LADDER_HEARTBEAT_MS: '2000',
      ...opts.workerEnv,
    };
    const main = join(ROOT, 'gpu-worker', 'src', 'main.ts');
    supervised = supervise(
      'gpu-worker',
      () => launch('gpu-worker', process.execPath, ['--import', 'tsx', main], workerEnv, true),
      { log, ...opts.restart },
    );
    void supervised.gaveUp.then((why) => {
      log(why);
      if (!stopping) onExit('gpu-worker');
    });
    const worker = supervised.current();
    await Promise.all([
      waitFor(`${edgeUrl}/healthz`, 120_000, () => edge.exitCode === null),
      // The first start must succeed on its own: a worker that cannot start is not restarted into a loop.
      waitFor(`${workerUrl}/readyz`, 300_000, () => worker.exitCode === null && worker.signalCode === null),
    ]);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    edgeUrl,
    workerUrl,
    backboneDir,
    backboneName: opts.backboneName,
    adminToken: DEV_ADMIN_TOKEN,
    stop,
    exited,
    worker: {
      pid: () => supervised?.current().pid,
      restarts: () => supervised?.restarts() ?? 0,
      onRestart: (fn) => supervised?.onRestart(() => fn()),
    },
  };
}

export interface DevTenant {
  base_url: string;
  tenant: string;
  api_key: string;
  /** The local admin token (edge/wrangler.jsonc's development default), for `ladder admin ...`. */
  admin_token: string;
}

/** A tenant and API key for local use, kept in `<dataDir>/dev-tenant.json` and reused while valid. */
export async function ensureDevTenant(platform: Platform, dataDir: string): Promise<DevTenant> {
  const file = join(dataDir, 'dev-tenant.json');
  if (existsSync(file)) {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as DevTenant;
    const probe = await fetch(`${platform.edgeUrl}/v1/models`, {
      headers: { authorization: `Bearer ${saved.api_key}` },
    });
    if (probe.ok) return { ...saved, base_url: `${platform.edgeUrl}/v1`, admin_token: platform.adminToken };
  }
  const admin = { authorization: `Bearer ${platform.adminToken}`, 'content-type': 'application/json' };
  const t = await fetch(`${platform.edgeUrl}/admin/v1/tenants`, {
    method: 'POST',
    headers: admin,
    body: JSON.stringify({ name: 'dev' }),
  });
  if (!t.ok) throw new Error(`creating the dev tenant failed: ${t.status} ${await t.text()}`);
  const tenant = ((await t.json()) as { id: string }).id;
  const k = await fetch(`${platform.edgeUrl}/admin/v1/tenants/${tenant}/keys`, {
    method: 'POST',
    headers: admin,
    body: JSON.stringify({ name: 'dev' }),
  });
  if (!k.ok) throw new Error(`creating the dev API key failed: ${k.status} ${await k.text()}`);
  const apiKey = ((await k.json()) as { key: string }).key;
  const dev = {
    base_url: `${platform.edgeUrl}/v1`,
    tenant,
    api_key: apiKey,
    admin_token: platform.adminToken,
  };
  writeFileSync(file, JSON.stringify(dev, null, 2));
  return dev;
}
