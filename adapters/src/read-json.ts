import { describeIssues } from '@ladder/schemas';
import type { z } from 'zod';
import type { BlobStore } from './blob.ts';
import { IntegrityError } from './errors.ts';

/** Reads a stored JSON object and validates it: undefined if absent, IntegrityError if malformed. */
export async function readJson<T>(
  blobs: BlobStore,
  key: string,
  schema: z.ZodType<T>,
): Promise<T | undefined> {
  const bytes = await blobs.get(key);
  if (!bytes) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new IntegrityError(`${key}: not UTF-8 JSON (${(e as Error).message})`, { cause: e });
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw new IntegrityError(`${key}: ${describeIssues(r.error)}`);
  return r.data;
}
