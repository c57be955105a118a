import { type BackboneConfig, HF_NAMES, type TensorSource } from '../types.ts';
import { CheckpointError, type CheckpointProblem } from './errors.ts';

/** Every tensor the architecture reads, with its HF shape: (out, in) for linear weights. */
export function expectedTensors(config: BackboneConfig): Map<string, number[]> {
  const { vocabSize: V, hiddenSize: d, heads: H, kvHeads: Hkv, headDim: dh, intermediateSize: ff } = config;
  const want = new Map<string, number[]>();
  want.set(HF_NAMES.embed, [V, d]);
  for (let i = 0; i < config.layers; i++) {
    const n = HF_NAMES.layer(i);
    want.set(n.inputNorm, [d]);
    want.set(n.q, [H * dh, d]);
    want.set(n.k, [Hkv * dh, d]);
    want.set(n.v, [Hkv * dh, d]);
    want.set(n.o, [d, H * dh]);
    if (config.qkvBias) {
      want.set(n.qBias, [H * dh]);
      want.set(n.kBias, [Hkv * dh]);
      want.set(n.vBias, [Hkv * dh]);
    }
    if (config.qkNorm) {
      want.set(n.qNorm, [dh]);
      want.set(n.kNorm, [dh]);
    }
    want.set(n.postAttnNorm, [d]);
    want.set(n.gate, [ff, d]);
    want.set(n.up, [ff, d]);
    want.set(n.down, [d, ff]);
  }
  want.set(HF_NAMES.finalNorm, [d]);
  if (!config.tieWordEmbeddings) want.set(HF_NAMES.lmHead, [V, d]);
  return want;
}

/**
 * Checks that the source holds every tensor the config needs, with the right shape, and throws one
 * CheckpointError listing ALL missing or misshapen tensors. Extra tensors are ignored (as HF does).
 */
export function expectTensors(source: TensorSource, config: BackboneConfig): void {
  const origin = (source as { origin?: unknown }).origin;
  const where = typeof origin === 'string' ? origin : 'checkpoint';
  const problems: CheckpointProblem[] = [];
  for (const [name, shape] of expectedTensors(config)) {
    const info = source.tensors.get(name);
    if (!info) {
      problems.push({
        file: where,
        field: `tensor '${name}'`,
        detail: `is missing (expected shape [${shape.join(', ')}])`,
      });
    } else if (info.shape.length !== shape.length || info.shape.some((x, i) => x !== shape[i])) {
      problems.push({
        file: info.file,
        field: `tensor '${name}'`,
        detail: `has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}]`,
      });
    }
  }
  if (problems.length) {
    throw new CheckpointError(
      problems,
      `${where}: ${problems.length} tensor(s) do not match the config (${config.architecture}):`,
    );
  }
}
