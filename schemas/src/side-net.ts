import { z } from 'zod';

/**
 * How a side network hangs off the backbone (DESIGN.md section 2). One config covers LST
 * (`taps` = every layer, `free` = 0) and xLadder (top layers tapped, `free` extra layers after
 * the last tap) and anything between. A later issue fleshes this out; the manifest stores the
 * parsed (defaults filled) form so a reader never guesses a default.
 */
export const SideNetConfig = z
  .strictObject({
    /** r: side width d_s = d / r. */
    reduction_factor: z.number().int().min(1).max(256).default(8),
    /** Backbone layer indices (0 = embeddings) feeding side layers 1..taps.length, in order. */
    taps: z
      .array(z.number().int().min(0).max(1024))
      .min(1)
      .refine((t) => t.every((v, i) => i === 0 || v > t[i - 1]!), 'must be strictly increasing'),
    /** Side layers with no ladder input, run after the last tapped one (xLadder). */
    free: z.number().int().min(0).max(1024).default(0),
    /** Per-dimension gate z_j in R^{d_s}, or one scalar per side layer. */
    gate: z.enum(['vector', 'scalar']).default('vector'),
    /** Side blocks start random (scaled) or structurally pruned from the backbone's blocks. */
    init: z.enum(['random', 'pruned']).default('random'),
    /** H_s: attention heads of each side block. */
    side_heads: z.number().int().min(1).max(256),
    dropout: z.number().min(0).lt(1).default(0),
  })
  .describe('side-net config');
export type SideNetConfig = z.infer<typeof SideNetConfig>;
export type SideNetConfigInput = z.input<typeof SideNetConfig>;
