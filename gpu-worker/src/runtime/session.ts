import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';

export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu';

export interface SessionOptions {
  provider: ExecutionProvider;
  /** Which GPU, for `cuda`. */
  deviceId: number;
  /** Threads inside one op; 0 lets ORT pick (one per physical core). */
  intraOpThreads: number;
  /** Threads running independent nodes at once (only with executionMode 'parallel'); 0: ORT picks. */
  interOpThreads: number;
  executionMode: 'sequential' | 'parallel';
  graphOptimization: 'disabled' | 'basic' | 'extended' | 'layout' | 'all';
  /** ORT's CPU arena allocator: faster repeated runs, but it keeps its peak memory. */
  memoryArena: boolean;
  /** Plan buffers once for repeated runs with the same shapes. */
  memoryPattern: boolean;
  /** onnxruntime graph transformers to leave out, by name (e.g. CommonSubexpressionElimination). */
  disabledOptimizers: readonly string[];
  /**
   * Profile every run into `<prefix>_<time>.json` (onnxruntime's trace: each kernel, in the order
   * it ran, with its output shapes); written when the session is disposed. Off when undefined.
   */
  profile: string | undefined;
}

const DEFAULTS: SessionOptions = {
  provider: 'cpu',
  deviceId: 0,
  intraOpThreads: 0,
  interOpThreads: 0,
  executionMode: 'sequential',
  graphOptimization: 'all',
  memoryArena: true,
  memoryPattern: true,
  disabledOptimizers: [],
  profile: undefined,
};

/** What one model input or output is declared as. */
export interface IoSpec {
  name: string;
  /** Element type; undefined for a non-tensor value (sequence, map). */
  type: ort.Tensor.Type | undefined;
  /**
   * Dims, numbers or symbolic names. ORT gives [] both for a scalar and for an undeclared
   * shape, so an empty shape is not checked.
   */
  shape: readonly (number | string)[];
}

export type Feeds = Record<string, ort.Tensor>;

/** Every problem with one `run` call's feeds, so they can be fixed in one go. */
export class FeedError extends Error {
  override name = 'FeedError';
  constructor(readonly problems: readonly string[]) {
    super(`session.run: ${problems.join('; ')}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Execution providers

// The CUDA provider libraries are too large for npm: onnxruntime-node's install script fetches
// them from NuGet, and this repo's .npmrc skips that. `listSupportedBackends()` says what the
// binding was compiled with; `bundled: false` means those files may or may not be on disk.
const CUDA_LIBS: Partial<Record<NodeJS.Platform, string[]>> = {
  linux: ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so'],
  win32: ['onnxruntime_providers_cuda.dll', 'onnxruntime_providers_shared.dll'],
};

function bindingDir(): string {
  const main = createRequire(import.meta.url).resolve('onnxruntime-node');
  return join(dirname(main), '..', 'bin', 'napi-v6', process.platform, process.arch);
}

/** Why `provider` cannot be used with this onnxruntime-node install, or undefined if it can. */
export function providerProblem(provider: ExecutionProvider): string | undefined {
  if (provider === 'cpu') return undefined;
  const platform = `${process.platform}/${process.arch}`;
  const built = ort.listSupportedBackends().find((b) => b.name === provider);
  if (!built) {
    return `onnxruntime-node ${ort.env.versions.node} for ${platform} is not built with the ${provider} provider`;
  }
  if (built.bundled) return undefined;
  if (provider === 'cuda') {
    const dir = bindingDir();
    const missing = (CUDA_LIBS[process.platform] ?? []).filter((f) => !existsSync(join(dir, f)));
    if (!missing.length) return undefined;
    return (
      `${missing.join(', ')} missing from ${dir}; fetch them with ` +
      '`ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node` (the repo .npmrc skips them by default) ' +
      'and put the CUDA 12 and cuDNN 9 libraries on the loader path'
    );
  }
  return `the ${provider} provider is not bundled with onnxruntime-node for ${platform}`;
}

/**
 * Providers whose binaries this onnxruntime-node install has, `cpu` always among them. A GPU
 * provider still needs its device when a session opens (webgpu is bundled on Linux x64 but
 * finds no adapter without Vulkan).
 */
export function availableProviders(): ExecutionProvider[] {
  const known: ExecutionProvider[] = ['cpu', 'cuda', 'webgpu'];
  return known.filter((p) => providerProblem(p) === undefined);
}

// Present in the binaries is not enough: the provider also needs a device at session creation.
const START_FAILURE = /adapter|provider|cuda|webgpu|vulkan|shared library|device/i;
const START_HINT: Record<ExecutionProvider, string> = {
  cpu: '',
  cuda: ' (CUDA needs an NVIDIA driver plus the CUDA 12 and cuDNN 9 libraries on the loader path)',
  webgpu: ' (WebGPU needs a GPU adapter: on Linux, libvulkan.so.1 and a Vulkan-capable driver)',
};

// ---------------------------------------------------------------------------------------------
// Sessions

function checkOptions(o: SessionOptions): void {
  for (const key of ['intraOpThreads', 'interOpThreads', 'deviceId'] as const) {
    if (!Number.isSafeInteger(o[key]) || o[key] < 0) {
      throw new Error(`createSession: ${key} must be a non-negative integer, got ${o[key]}`);
    }
  }
}

function ortOptions(o: SessionOptions): ort.InferenceSession.SessionOptions {
  const provider: ort.InferenceSession.ExecutionProviderConfig =
    o.provider === 'cuda' ? { name: 'cuda', deviceId: o.deviceId } : o.provider;
  return {
    executionProviders: [provider],
    graphOptimizationLevel: o.graphOptimization,
    executionMode: o.executionMode,
    enableCpuMemArena: o.memoryArena,
    enableMemPattern: o.memoryPattern,
    ...(o.intraOpThreads > 0 ? { intraOpNumThreads: o.intraOpThreads } : {}),
    ...(o.interOpThreads > 0 ? { interOpNumThreads: o.interOpThreads } : {}),
    ...(o.profile !== undefined ? { enableProfiling: true, profileFilePrefix: o.profile } : {}),
    ...(o.disabledOptimizers.length
      ? { extra: { optimization: { disable_specified_optimizers: o.disabledOptimizers.join(';') } } }
      : {}),
  };
}

/**
 * Open a model: from its bytes, or from a file path. A model whose initializers live in an
 * external `.data` file must be opened from its path: ORT resolves the data next to the model.
 */
export async function createSession(
  model: Uint8Array | string,
  opts: Partial<SessionOptions> = {},
): Promise<Session> {
  const o = { ...DEFAULTS, ...opts } satisfies SessionOptions;
  checkOptions(o);
  const problem = providerProblem(o.provider);
  if (problem) {
    throw new Error(
      `execution provider '${o.provider}' is not available in this onnxruntime-node install: ${problem} ` +
        `(available: ${availableProviders().join(', ')})`,
    );
  }
  const source = typeof model === 'string' ? `model file ${model}` : `${model.byteLength}-byte model`;
  if (typeof model === 'string' && !existsSync(model)) throw new Error(`createSession: no ${source}`);
  let inner: ort.InferenceSession;
  try {
    inner =
      typeof model === 'string'
        ? await ort.InferenceSession.create(model, ortOptions(o))
        : await ort.InferenceSession.create(model, ortOptions(o));
  } catch (err) {
    const msg = (err as Error).message.trim();
    // ORT resolves a bytes model's external data against the process's working directory
    const hint =
      /external data/i.test(msg) && typeof model !== 'string' ? ' (open it from its file path)' : '';
    const start = START_FAILURE.test(msg) ? START_HINT[o.provider] : '';
    throw new Error(
      `createSession: cannot open ${source} with provider '${o.provider}': ${msg}${hint}${start}`,
      { cause: err },
    );
  }
  return new Session(inner, o.provider);
}

function specOf(m: ort.InferenceSession.ValueMetadata): IoSpec {
  return m.isTensor
    ? { name: m.name, type: m.type, shape: m.shape }
    : { name: m.name, type: undefined, shape: [] };
}

const shapeStr = (s: readonly (number | string)[]) => `[${s.join(', ')}]`;

/** Names for a message: a training step has hundreds of inputs, so list the first few. */
function nameList(names: readonly string[], max = 12): string {
  return names.length <= max
    ? names.join(', ')
    : `${names.slice(0, max).join(', ')}, ... (${names.length} in all)`;
}

/** The fed value for `name`; own properties only, so an input called `constructor` is not found fed. */
function fed(feeds: Feeds, name: string): ort.Tensor | undefined {
  return Object.hasOwn(feeds, name) ? feeds[name] : undefined;
}

/**
 * Problems with one fed tensor against its declared input, binding symbolic dims as it goes so
 * that `batch` must mean the same size in every input.
 */
function feedProblems(spec: IoSpec, t: unknown, bound: Map<string, [number, string]>): string[] {
  if (!(t instanceof ort.Tensor)) {
    const got = (t as object)?.constructor?.name ?? typeof t;
    return [`${spec.name}: expected an onnxruntime Tensor, got ${got}`];
  }
  const problems: string[] = [];
  if (spec.type && t.type !== spec.type)
    problems.push(`${spec.name}: dtype ${t.type}, model wants ${spec.type}`);
  if (spec.shape.length === 0) return problems;
  if (t.dims.length !== spec.shape.length) {
    problems.push(
      `${spec.name}: rank ${t.dims.length} ${shapeStr(t.dims)}, model wants rank ${spec.shape.length} ${shapeStr(spec.shape)}`,
    );
    return problems;
  }
  spec.shape.forEach((want, i) => {
    const got = t.dims[i]!;
    if (typeof want === 'number') {
      if (got !== want)
        problems.push(`${spec.name}: dim ${i} is ${got}, model wants ${want} in ${shapeStr(spec.shape)}`);
      return;
    }
    if (want === '') return; // an unnamed dynamic dim
    const prev = bound.get(want);
    if (!prev) bound.set(want, [got, spec.name]);
    else if (prev[0] !== got)
      problems.push(`${spec.name}: dim ${i} '${want}' is ${got}, but ${prev[1]} has ${want} = ${prev[0]}`);
  });
  return problems;
}

/** One ORT session: checks feeds against the model's declared inputs, and must be disposed. */
export class Session {
  readonly inputs: readonly IoSpec[];
  readonly outputs: readonly IoSpec[];
  private readonly inputByName: ReadonlyMap<string, IoSpec>;
  private readonly outputByName: ReadonlyMap<string, IoSpec>;
  private disposed = false;
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(
    private readonly inner: ort.InferenceSession,
    readonly provider: ExecutionProvider = 'cpu',
  ) {
    this.inputs = inner.inputMetadata.map(specOf);
    this.outputs = inner.outputMetadata.map(specOf);
    this.inputByName = new Map(this.inputs.map((s) => [s.name, s]));
    this.outputByName = new Map(this.outputs.map((s) => [s.name, s]));
  }

  get inputNames(): readonly string[] {
    return this.inputs.map((s) => s.name);
  }

  get outputNames(): readonly string[] {
    return this.outputs.map((s) => s.name);
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * Every problem with `feeds` (missing, unknown, wrong dtype, rank or dims) and with the output
   * buffers `into` (unknown, wrong dtype); [] when fine.
   */
  check(
    feeds: Feeds,
    outputs?: readonly string[],
    into: Readonly<Record<string, ort.Tensor>> = {},
  ): string[] {
    const problems: string[] = [];
    const missing = this.inputs.filter((s) => fed(feeds, s.name) === undefined).map((s) => s.name);
    const unknown = Object.keys(feeds).filter((n) => !this.inputByName.has(n));
    if (missing.length) problems.push(`missing inputs: ${missing.join(', ')}`);
    if (unknown.length) {
      problems.push(`unknown inputs: ${unknown.join(', ')} (the model takes ${nameList(this.inputNames)})`);
    }
    const unknownOut = (outputs ?? []).filter((n) => !this.outputByName.has(n));
    if (unknownOut.length) {
      problems.push(
        `unknown outputs: ${unknownOut.join(', ')} (the model gives ${nameList(this.outputNames)})`,
      );
    }
    const bound = new Map<string, [number, string]>();
    for (const spec of this.inputs) {
      const t = fed(feeds, spec.name);
      if (t !== undefined) problems.push(...feedProblems(spec, t, bound));
    }
    for (const [name, t] of Object.entries(into)) {
      const spec = this.outputByName.get(name);
      if (!spec) problems.push(`output buffer for unknown output '${name}'`);
      else if (outputs && !outputs.includes(name))
        problems.push(`output buffer for '${name}', which is not asked for`);
      else if (t.type !== spec.type)
        problems.push(`${name}: output buffer of dtype ${t.type}, model gives ${spec.type}`);
    }
    return problems;
  }

  /**
   * Run the model; all outputs unless `outputs` names some. Feeds are checked first.
   * `into` gives outputs a buffer of the caller's (of the output's shape): onnxruntime writes the
   * output there instead of allocating it, and onnxruntime-node still hands back its own copy.
   */
  async run(
    feeds: Feeds,
    outputs?: readonly string[],
    into: Readonly<Record<string, ort.Tensor>> = {},
  ): Promise<Record<string, ort.Tensor>> {
    if (this.disposed) throw new Error('session.run: this session was disposed');
    const problems = this.check(feeds, outputs, into);
    if (problems.length) throw new FeedError(problems);
    const names = outputs ?? this.outputNames;
    const pending = Object.keys(into).length
      ? this.inner.run(
          feeds,
          Object.fromEntries(names.map((n) => [n, Object.hasOwn(into, n) ? into[n]! : null])),
        )
      : outputs
        ? this.inner.run(feeds, [...outputs])
        : this.inner.run(feeds);
    this.inFlight.add(pending);
    try {
      return (await pending) as Record<string, ort.Tensor>;
    } finally {
      this.inFlight.delete(pending);
    }
  }

  /** Release the native session once runs in flight settle; later runs are refused. Idempotent. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await Promise.allSettled([...this.inFlight]);
    await this.inner.release();
  }
}
