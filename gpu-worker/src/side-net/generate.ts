import {
  type BackboneStepper,
  type KvCache,
  lastRows,
  type StepInput,
  type StepOutput,
  type Stepper,
} from '../backbone/generate/index.ts';
import { IO } from '../backbone/graph/emit.ts';
import { f32, i64, type Session, type Tensor, zeros } from '../runtime/index.ts';
import type { SideNetShape } from './config.ts';
import { sideNetParams } from './params.ts';
import { SIDE_IO } from './steps.ts';

/** Both caches: the backbone's (shared by every adapter) and the side network's own. */
export interface AdapterCache {
  backbone: KvCache;
  side: KvCache;
}

/** Adapter weights as onnxruntime tensors, ready to feed the shared side-net session. */
export function adapterTensors(
  shape: SideNetShape,
  weights: Record<string, Float32Array>,
): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  const missing: string[] = [];
  for (const p of sideNetParams(shape)) {
    const w = weights[p.name];
    if (!w) missing.push(p.name);
    else out[SIDE_IO.param(p.name)] = f32(w, p.shape, p.name);
  }
  if (missing.length) throw new Error(`adapter weights: missing ${missing.join(', ')}`);
  return out;
}

/**
 * Generation with an adapter: each step runs the backbone (taps out, no logits needed) and then
 * the side network on them; both keep their KV caches. Plug it into the backbone's `generate`.
 */
export class AdapterStepper implements Stepper<AdapterCache> {
  constructor(
    readonly backbone: BackboneStepper,
    readonly side: Session,
    readonly shape: SideNetShape,
    readonly adapter: Record<string, Tensor>,
    /** The backbone's frozen LM head (V, d) as a tensor: the embedding table when tied. */
    readonly lmHead: Tensor,
  ) {}

  async step(input: StepInput<AdapterCache>): Promise<StepOutput<AdapterCache>> {
    const bb = await this.backbone.run({ ...input, past: input.past?.backbone });
    const B = input.ids.length;
    const T = input.ids[0]!.length;
    const S = input.mask[0]!.length;
    const s = this.shape;
    const feeds: Record<string, Tensor> = {
      ...this.adapter,
      [SIDE_IO.finalHidden]: bb.outputs[IO.finalHidden]!,
      [SIDE_IO.lmHead]: this.lmHead,
      [SIDE_IO.mask]: i64(input.mask.flat(), [B, S]),
      [SIDE_IO.positions]: i64(input.positions.flat(), [B, T]),
    };
    for (const t of s.taps) {
      const tap = bb.outputs[IO.tap(t)];
      if (!tap) throw new Error(`AdapterStepper: the backbone graph does not output tap ${t}`);
      feeds[SIDE_IO.tap(t)] = tap;
    }
    s.layers.forEach((_, j) => {
      const empty = [B, s.heads, 0, s.headDim];
      feeds[SIDE_IO.pastKey(j)] = input.past?.side.keys[j] ?? zeros('float32', empty);
      feeds[SIDE_IO.pastValue(j)] = input.past?.side.values[j] ?? zeros('float32', empty);
    });
    const out = await this.side.run(feeds);
    const side: KvCache = {
      keys: s.layers.map((_, j) => out[SIDE_IO.presentKey(j)]!),
      values: s.layers.map((_, j) => out[SIDE_IO.presentValue(j)]!),
    };
    return { lastLogits: lastRows(out[SIDE_IO.logits]!), present: { backbone: bb.present, side } };
  }
}
