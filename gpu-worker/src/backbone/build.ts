import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { ExternalDataWriter, saveModel } from '../graph/index.ts';
import { loadConfig } from './checkpoint/config.ts';
import { expectTensors } from './checkpoint/expect.ts';
import { checkpointFingerprint } from './checkpoint/fingerprint.ts';
import { openCheckpoint } from './checkpoint/source.ts';
import { BACKBONE_GRAPH_DEFAULTS, type BackboneGraphOptions, buildBackboneGraph } from './graph/emit.ts';
import type { BackboneConfig } from './types.ts';

/** Bumped when the emitted graph changes, so stale cached builds are not reused. */
export const BUILD_FORMAT = 3;

export interface BackboneBuild {
  /** The cache entry: model.onnx, model.onnx.data, build.json. */
  dir: string;
  modelPath: string;
  config: BackboneConfig;
  meta: BuildMeta;
  /** False when the build came from the cache. */
  built: boolean;
}

const BuildMeta = z.object({
  format: z.literal(BUILD_FORMAT),
  key: z.string(),
  fingerprint: z.string(),
  options: z.unknown(),
  builtAt: z.string(),
  buildSeconds: z.number(),
  params: z.number(),
  weightBytes: z.object({ linear: z.number(), other: z.number() }),
  layers: z.array(z.object({ name: z.string(), relError: z.number() })),
});
export type BuildMeta = z.infer<typeof BuildMeta>;

export interface BuildOptions {
  /** Where built backbones are cached, one folder per (checkpoint, options) key. */
  cacheDir: string;
  graph: Partial<BackboneGraphOptions>;
}

/**
 * The checkpoint at `dir` as an ONNX backbone, built once and cached on disk keyed by the
 * checkpoint's fingerprint and the build options; a second call loads the cached one. A build
 * happens in a temporary folder renamed into place at the end, so a failed or interrupted build
 * leaves nothing in the cache, and weights stream tensor by tensor to the external data file.
 */
export async function buildBackbone(dir: string, opts: BuildOptions): Promise<BackboneBuild> {
  const graphOpts = { ...BACKBONE_GRAPH_DEFAULTS, ...opts.graph } satisfies BackboneGraphOptions;
  const config = await loadConfig(dir);
  const fingerprint = await checkpointFingerprint(dir);
  const key = createHash('sha256')
    .update(JSON.stringify({ fingerprint, graphOpts, format: BUILD_FORMAT }))
    .digest('hex')
    .slice(0, 24);
  const entry = join(opts.cacheDir, key);
  const cached = readCached(entry);
  if (cached) return { dir: entry, modelPath: join(entry, 'model.onnx'), config, meta: cached, built: false };

  const started = performance.now();
  const source = await openCheckpoint(dir);
  mkdirSync(opts.cacheDir, { recursive: true });
  const tmp = join(opts.cacheDir, `.building-${key}-${randomBytes(4).toString('hex')}`);
  try {
    expectTensors(source, config);
    mkdirSync(tmp);
    const writer = new ExternalDataWriter(join(tmp, 'model.onnx.data'));
    const { graph, report, weightBytes } = await buildBackboneGraph(config, source, graphOpts, { writer });
    saveModel(graph, join(tmp, 'model.onnx'), { dataWriter: writer });
    const meta: BuildMeta = {
      format: BUILD_FORMAT,
      key,
      fingerprint,
      options: graphOpts,
      builtAt: new Date().toISOString(),
      buildSeconds: (performance.now() - started) / 1000,
      params: [...source.tensors.values()].reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0),
      weightBytes,
      layers: report,
    };
    writeFileSync(join(tmp, 'build.json'), JSON.stringify(meta, null, 2));
    try {
      renameSync(tmp, entry);
    } catch (err) {
      // Another process finished the same build first: keep theirs.
      if (!readCached(entry)) throw err;
      rmSync(tmp, { recursive: true, force: true });
    }
    return { dir: entry, modelPath: join(entry, 'model.onnx'), config, meta, built: true };
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    await source.close();
  }
}

function readCached(entry: string): BuildMeta | undefined {
  const metaPath = join(entry, 'build.json');
  if (!existsSync(metaPath) || !existsSync(join(entry, 'model.onnx'))) return undefined;
  try {
    const parsed = BuildMeta.safeParse(JSON.parse(readFileSync(metaPath, 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined; // an unreadable entry is rebuilt
  }
}
