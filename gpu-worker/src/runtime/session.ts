import * as ort from 'onnxruntime-node';

export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu';

export interface SessionOptions {
  provider: ExecutionProvider;
  intraOpThreads: number;
  graphOptimization: 'disabled' | 'basic' | 'extended' | 'all';
  memoryArena: boolean;
}

const DEFAULTS: SessionOptions = {
  provider: 'cpu',
  intraOpThreads: 0,
  graphOptimization: 'all',
  memoryArena: true,
};

/** Providers this onnxruntime-node build can use, `cpu` always among them. */
export function availableProviders(): ExecutionProvider[] {
  const known: ExecutionProvider[] = ['cpu', 'cuda', 'webgpu'];
  const listed = ort.listSupportedBackends();
  return known.filter((p) => listed.some((b) => b.name === p && b.bundled));
}

export async function createSession(
  model: Uint8Array | string,
  opts: Partial<SessionOptions> = {},
): Promise<Session> {
  const o = { ...DEFAULTS, ...opts } satisfies SessionOptions;
  if (!availableProviders().includes(o.provider)) {
    throw new Error(
      `execution provider '${o.provider}' is not available in this onnxruntime-node build ` +
        `(available: ${availableProviders().join(', ')}); for CUDA reinstall with ONNXRUNTIME_NODE_INSTALL=cuda12`,
    );
  }
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [o.provider],
    graphOptimizationLevel: o.graphOptimization,
    enableCpuMemArena: o.memoryArena,
    ...(o.intraOpThreads > 0 ? { intraOpNumThreads: o.intraOpThreads } : {}),
  };
  const inner =
    typeof model === 'string'
      ? await ort.InferenceSession.create(model, options)
      : await ort.InferenceSession.create(model, options);
  return new Session(inner);
}

export type Feeds = Record<string, ort.Tensor>;

/** A thin owner of one ORT session: checks feeds by name, and must be disposed. */
export class Session {
  constructor(private readonly inner: ort.InferenceSession) {}

  get inputNames(): readonly string[] {
    return this.inner.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.inner.outputNames;
  }

  async run(feeds: Feeds, outputs?: readonly string[]): Promise<Record<string, ort.Tensor>> {
    const missing = this.inner.inputNames.filter((n) => !(n in feeds));
    const unknown = Object.keys(feeds).filter((n) => !this.inner.inputNames.includes(n));
    if (missing.length || unknown.length) {
      const parts = [];
      if (missing.length) parts.push(`missing inputs: ${missing.join(', ')}`);
      if (unknown.length) parts.push(`unknown inputs: ${unknown.join(', ')}`);
      throw new Error(`session.run: ${parts.join('; ')}`);
    }
    return outputs ? this.inner.run(feeds, outputs as string[]) : this.inner.run(feeds);
  }

  async dispose(): Promise<void> {
    await this.inner.release();
  }
}
