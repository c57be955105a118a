import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FsAdapterStore } from '../../../adapters/index.ts';
import { checkpointFingerprint, loadConfig } from '../../../gpu-worker/src/backbone/checkpoint/index.ts';
import {
  initSideNet,
  lstPreset,
  resolveSideNet,
  sideNetParams,
} from '../../../gpu-worker/src/side-net/index.ts';
import { Rng } from '../../../gpu-worker/src/util/rng.ts';
import { type AdapterManifest, JobEvent, signRequest, verifyRequest } from '../../../schemas/index.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const SECRET = 'test-secret-0123456789abcdef';

export interface WorkerProcess {
  url: string;
  proc: ChildProcess;
  output: () => string;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit: no cleanup of any kind runs. */
  kill(): Promise<void>;
}

/** The real worker entry (gpu-worker/src/main.ts) in its own Node process, ready to serve. */
export async function spawnWorker(env: Record<string, string>, timeoutMs = 90_000): Promise<WorkerProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'gpu-worker/src/main.ts')], {
    cwd: root,
    env: {
      ...process.env,
      LADDER_WORKER_HOST: '127.0.0.1',
      LADDER_WORKER_PORT: '0',
      LADDER_WORKER_SECRET: SECRET,
      LADDER_INTRA_OP_THREADS: '1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker did not get ready:\n${out}`)), timeoutMs);
    let listening: string | undefined;
    const onData = (c: Buffer) => {
      out += c.toString();
      listening ??= /listening on (http:\/\/\S+)/.exec(out)?.[1];
      if (listening && out.includes('gpu-worker ready')) {
        clearTimeout(timer);
        resolve(listening);
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited (${code}) before it was ready:\n${out}`));
    });
  });
  return {
    url,
    proc,
    output: () => out,
    stop: async () => {
      proc.kill('SIGTERM');
      await exited;
    },
    kill: async () => {
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

/** A request signed as the edge signs it. */
export async function signed(
  url: string,
  path: string,
  body: unknown,
  opts: { method?: string; secret?: string; timestamp?: number; signal?: AbortSignal } = {},
): Promise<Response> {
  const method = opts.method ?? 'POST';
  const text = method === 'GET' ? '' : JSON.stringify(body);
  const headers = await signRequest(opts.secret ?? SECRET, method, path, text, opts.timestamp);
  return fetch(`${url}${path}`, {
    method,
    headers: { ...headers, 'content-type': 'application/json' },
    ...(method === 'GET' ? {} : { body: text }),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
}

/** A Prometheus text sample by name (and exact label text). */
export async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`metric ${name} not exposed`);
  return Number(line.split(' ')[1]);
}

/** Publishes an LST adapter with a non-zero Up (so it changes the backbone's output) for a tiny backbone. */
export async function publishAdapter(opts: {
  dataDir: string;
  backboneDir: string;
  tenant: string;
  adapterId: string;
  seed: number;
}): Promise<AdapterManifest> {
  const cfg = await loadConfig(opts.backboneDir);
  const config = lstPreset(cfg, { reduction_factor: 8 });
  const shape = resolveSideNet(cfg, config);
  const weights = initSideNet(shape, opts.seed);
  const rng = new Rng(opts.seed + 100);
  const up = weights['up.weight']!;
  for (let i = 0; i < up.length; i++) up[i] = rng.normal() * 2;
  const store = new FsAdapterStore({ dataDir: opts.dataDir, tenant: opts.tenant });
  return store.put({
    adapterId: opts.adapterId,
    version: 1,
    name: opts.adapterId,
    backbone: { name: 'tiny', fingerprint: await checkpointFingerprint(opts.backboneDir) },
    sideNet: shape.config,
    training: { job_id: 'fixture', steps: 0, tokens: 0, final_losses: { train: 0 } },
    weights: Object.fromEntries(
      sideNetParams(shape).map((p) => [
        p.name,
        { dtype: 'F32' as const, shape: p.shape, data: weights[p.name]! },
      ]),
    ),
  });
}

export const refOf = (m: AdapterManifest) => ({
  tenant: m.tenant,
  adapter_id: m.adapter_id,
  version: m.version,
  sha256: m.weights.sha256,
});

/**
 * A stand-in for the edge (NOT the real edge, which runs on workerd): it serves training files
 * and records the worker's signed job events and heartbeats, deduplicating events by id the way
 * the edge does, and answers each event as the edge does (`{ ok, duplicate, job_status }`).
 */
export class StandInEdge {
  readonly files = new Map<string, string>();
  /** Every event POST that verified, in arrival order (retries and repeats included). */
  readonly posts: { event: JobEvent; raw: string }[] = [];
  readonly heartbeats: unknown[] = [];
  /** The job_status its answers give a job (the edge's status for it); 'running' when unset. */
  readonly jobStatus = new Map<string, string>();
  /** Answers every event of these jobs with this HTTP status instead (a rotated secret: 401). */
  readonly refuse = new Map<string, number>();
  /** Events refused by `refuse`, in arrival order. */
  readonly refused: JobEvent[] = [];
  rejected = 0;
  private server: Server | undefined;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    const addr = this.server.address() as { port: number };
    this.url = `http://127.0.0.1:${addr.port}`;
    return this;
  }

  /** Events by id, first copy kept (what the edge would have recorded). */
  events(jobId?: string): JobEvent[] {
    const seen = new Map<string, JobEvent>();
    for (const { event } of this.posts) if (!seen.has(event.event_id)) seen.set(event.event_id, event);
    return [...seen.values()].filter((e) => jobId === undefined || e.job_id === jobId);
  }

  private async handle(req: IncomingMessage, res: import('node:http').ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString();
    const path = new URL(req.url!, this.url).pathname;
    const headers = { get: (n: string) => (req.headers[n.toLowerCase()] as string | undefined) ?? null };
    const v = await verifyRequest(SECRET, req.method!, path, body, headers);
    if (!v.ok) {
      this.rejected++;
      res.writeHead(401).end(v.reason);
      return;
    }
    if (req.method === 'GET' && path.startsWith('/files/')) {
      const text = this.files.get(path.slice('/files/'.length));
      if (text === undefined) res.writeHead(404).end('no such file');
      else res.writeHead(200, { 'content-type': 'application/jsonl' }).end(text);
      return;
    }
    if (req.method === 'POST' && path.startsWith('/events/')) {
      const event = JobEvent.parse(JSON.parse(body));
      const refusal = this.refuse.get(event.job_id);
      if (refusal !== undefined) {
        this.refused.push(event);
        res.writeHead(refusal).end('{"error":{"message":"refused by the test"}}');
        return;
      }
      const duplicate = this.posts.some((p) => p.event.event_id === event.event_id);
      this.posts.push({ event, raw: body });
      const job_status = this.jobStatus.get(event.job_id) ?? 'running';
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ ok: true, duplicate, job_status }));
      return;
    }
    if (req.method === 'POST' && path === '/internal/v1/workers/heartbeat') {
      this.heartbeats.push(JSON.parse(body));
      res.writeHead(200).end('{}');
      return;
    }
    res.writeHead(404).end();
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => this.server?.close(() => r()));
  }
}
