import { createHash } from 'node:crypto';

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** JSON with object keys sorted at every level, so equal configs hash equally. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

/**
 * The backbone fingerprint an adapter is bound to: sha256 over the backbone's config (canonical
 * JSON) and its quantized weights, streamed in a fixed order so a multi-GB checkpoint never sits
 * in one buffer. Two builds that differ in any config field or weight byte get different
 * fingerprints, and a store refuses to serve an adapter trained on a different one.
 */
export async function backboneFingerprint(
  config: unknown,
  weights: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
): Promise<string> {
  const h = createHash('sha256');
  h.update('ladder.backbone.v1\n');
  h.update(canonicalJson(config));
  h.update('\n');
  for await (const chunk of weights) h.update(chunk);
  return h.digest('hex');
}
