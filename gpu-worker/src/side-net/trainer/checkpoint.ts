import { decodeSafetensors, encodeSafetensors, type TensorInput, tensorView } from '@ladder/adapters';
import { z } from 'zod';

/**
 * A training checkpoint: everything a resumed run needs to continue exactly where the first one
 * stopped, as one safetensors file.
 *
 *   tensors   every parameter, and its Adam moments as m_<name>, v_<name> (float32)
 *   metadata  "ladder.trainer": JSON { run, state }
 *     run     fingerprint of what defines the trajectory (backbone build, side-net config,
 *             hyperparameters, examples and batch plan): a resume onto anything else is refused
 *     state   updates taken, the data cursor, running totals
 *
 * Nothing else is random: initial weights come from the seed, dropout masks and the batch order
 * are pure functions of (seed, step) and (seed, epoch), the learning rate of the step.
 */

export const CHECKPOINT_FORMAT = 'ladder.side-net-checkpoint/1';

const TrainerState = z.strictObject({
  /** Optimizer updates taken. */
  step: z.number().int().nonnegative(),
  /** The BatchLoader's state: where the next micro-batch comes from. */
  loader: z.strictObject({
    epoch: z.number().int().nonnegative(),
    index: z.number().int().nonnegative(),
    fingerprint: z.string(),
  }),
  /** Real (unpadded) tokens trained on so far. */
  tokensSeen: z.number().int().nonnegative(),
  /**
   * Token-weighted loss of the epoch in progress (sum of loss x targets, and targets), and its
   * targets predicted exactly (absent in checkpoints written before it was counted).
   */
  epochLoss: z.strictObject({
    epoch: z.number().int().nonnegative(),
    sum: z.number(),
    targets: z.number().int().nonnegative(),
    correct: z.number().nonnegative().optional(),
  }),
  /** Whether later epochs read the activation cache (null: not decided yet). */
  activationCacheUsed: z.boolean().nullable(),
});
export type TrainerState = z.infer<typeof TrainerState>;

const Meta = z.strictObject({ format: z.literal(CHECKPOINT_FORMAT), run: z.string(), state: TrainerState });

export interface CheckpointContents {
  run: string;
  state: TrainerState;
  /** Parameters and moments by TrainRunner state name. */
  tensors: Record<string, Float32Array>;
}

export function encodeCheckpoint(
  c: CheckpointContents,
  shapes: Readonly<Record<string, readonly number[]>>,
): Uint8Array {
  const tensors: Record<string, TensorInput> = {};
  for (const [name, data] of Object.entries(c.tensors)) {
    const shape = shapes[name];
    if (!shape) throw new Error(`encodeCheckpoint: no shape for '${name}'`);
    tensors[name] = { dtype: 'F32', shape, data };
  }
  const meta = { format: CHECKPOINT_FORMAT, run: c.run, state: c.state } satisfies z.input<typeof Meta>;
  return encodeSafetensors(tensors, { 'ladder.trainer': JSON.stringify(meta) });
}

/** Decodes and validates a checkpoint; every error names `source`. */
export function decodeCheckpoint(bytes: Uint8Array, source = 'checkpoint'): CheckpointContents {
  const decoded = decodeSafetensors(bytes, source);
  const raw = decoded.metadata['ladder.trainer'];
  if (raw === undefined)
    throw new Error(`${source}: no 'ladder.trainer' metadata (not a trainer checkpoint)`);
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (e) {
    throw new Error(`${source}: 'ladder.trainer' metadata is not JSON: ${(e as Error).message}`);
  }
  const meta = Meta.safeParse(json);
  if (!meta.success) throw new Error(`${source}: bad trainer metadata: ${z.prettifyError(meta.error)}`);
  const tensors: Record<string, Float32Array> = {};
  for (const t of decoded.tensors) {
    if (t.dtype !== 'F32') throw new Error(`${source}: tensor '${t.name}' is ${t.dtype}, not F32`);
    tensors[t.name] = tensorView(t) as Float32Array;
  }
  return { run: meta.data.run, state: meta.data.state, tensors };
}
