import { z } from 'zod';

/**
 * Ids that become one segment of a storage key (tenant, adapter id, job id). The alphabet is
 * ASCII on purpose: no `/`, no `.`, no look-alike unicode, so no key built from them can leave
 * its `tenants/{tenant}/` prefix, and the same id means the same key on every store.
 */
export const SafeId = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/,
    'must be 1-128 of [A-Za-z0-9_-], starting with a letter or digit',
  );

/** File-like names (datasets): like SafeId but dots allowed inside, never `..`. */
export const SafeName = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/,
    'must be 1-128 of [A-Za-z0-9._-], starting with a letter or digit',
  )
  .refine((s) => !s.includes('..'), 'must not contain ".."');

/** A lowercase hex SHA-256 digest. */
export const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits (sha256)');
