// `npm start`: the whole platform on its embedded defaults, every process on 127.0.0.1: the edge
// (workerd via `wrangler dev --local`, state in .data/edge-state), one GPU worker on the CPU with
// the filesystem adapter store, and a development tenant whose API key is printed. A worker that
// dies is restarted with backoff (its jobs resume from their checkpoints). Ctrl-C stops every
// process started here.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  DEFAULT_BACKBONE_NAME,
  ensureDevTenant,
  PRETRAINED_BACKBONE,
  ROOT,
  startPlatform,
} from './platform.ts';

const dataDir = process.env.LADDER_DATA_ROOT ?? join(ROOT, '.data');
const quiet = process.argv.includes('--quiet');
// The backbone: LADDER_BACKBONE_DIR if set, else the pretrained ladder-base shipped in models/, else
// (a checkout without it) a small random checkpoint generated on first start.
const pretrained = existsSync(join(PRETRAINED_BACKBONE.dir, 'model.safetensors'));
const backboneDir = process.env.LADDER_BACKBONE_DIR ?? (pretrained ? PRETRAINED_BACKBONE.dir : undefined);
const defaultName =
  process.env.LADDER_BACKBONE_DIR || !pretrained ? DEFAULT_BACKBONE_NAME : PRETRAINED_BACKBONE.name;
const platform = await startPlatform({
  dataDir,
  edgePort: Number(process.env.LADDER_EDGE_PORT ?? 8787),
  workerPort: Number(process.env.LADDER_WORKER_PORT ?? 8788),
  backboneDir,
  backboneName: process.env.LADDER_BACKBONE_NAME ?? defaultName,
  // Heartbeats arrive every few seconds; the edge's access log line for each is noise here.
  log: quiet ? () => {} : (line) => line.includes('/workers/heartbeat') || console.log(line),
});
const dev = await ensureDevTenant(platform, dataDir);
const generated = backboneDir === undefined;
console.log(
  [
    '',
    'Ladder is running.',
    `  base URL   ${dev.base_url}    (OpenAI-compatible)`,
    `  API key    ${dev.api_key}    (tenant ${dev.tenant}; saved in ${join(dataDir, 'dev-tenant.json')})`,
    `  backbone   ${platform.backboneName}: ${platform.backboneDir}`,
    generated
      ? '             (a small RANDOM checkpoint generated for local use: it trains and serves, but says nothing\n' +
        '              sensible. Point LADDER_BACKBONE_DIR at a Hugging Face model directory, e.g. Qwen2.5-0.5B.)'
      : backboneDir === PRETRAINED_BACKBONE.dir
        ? '             (pretrained here on Brown and WordNet: small, English-only; see models/ladder-base/README.md)'
        : '',
    `  worker     ${platform.workerUrl}   (metrics at /metrics)`,
    '',
    `Try:  npx ladder models list      or      curl ${dev.base_url}/models -H "authorization: Bearer ${dev.api_key}"`,
    'Ctrl-C stops everything.',
  ]
    .filter((l) => l !== '')
    .join('\n'),
);

let stopping = false;
const shutdown = (code: number) => {
  if (stopping) return;
  stopping = true;
  console.log('stopping...');
  void platform.stop().then(() => process.exit(code));
};
process.on('SIGINT', () => shutdown(0));
process.on('SIGTERM', () => shutdown(0));
void platform.exited.then((name) => {
  console.error(`${name} exited unexpectedly; stopping the platform`);
  shutdown(1);
});
