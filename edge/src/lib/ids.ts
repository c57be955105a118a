/**
 * Ids sort by creation time (a base-36 millisecond prefix), so "newest first" and cursor
 * pagination are a plain `ORDER BY id DESC` / `id < ?`. They satisfy SafeId: they become
 * storage-key segments on the workers.
 */
export function newId(prefix: string, now = Date.now()): string {
  // Reverse-free: 9 base-36 digits cover ms timestamps until the year 5188.
  return `${prefix}-${now.toString(36).padStart(9, '0')}${randomToken(8)}`;
}

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

export function randomToken(length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let out = '';
  for (const b of bytes) out += ALPHABET[b % 36];
  return out;
}

export const unixSeconds = (ms = Date.now()) => Math.floor(ms / 1000);

/** `YYYY-MM-DD` in UTC. */
export const utcDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);
