/** Small text formatting for tables and progress lines. */

export type Align = 'left' | 'right';

/** Columns padded to their widest cell, two spaces apart; numbers usually right-aligned. */
export function table(headers: string[], rows: string[][], align: Align[] = []): string {
  const widths = headers.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => (align[c] === 'right' ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** `2025-01-31 12:00:00` (UTC) from unix seconds; `-` for none. */
export function dateTime(unixSeconds: number | null | undefined): string {
  if (unixSeconds == null || unixSeconds <= 0) return '-';
  return new Date(unixSeconds * 1000).toISOString().slice(0, 19).replace('T', ' ');
}

/** Local wall-clock time for event lines. */
export function clockTime(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toTimeString().slice(0, 8);
}

/** `42s`, `3m05s`, `1h02m`. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** `1,234,567` */
export function integer(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** `980`, `12.3k`, `4.5M` */
export function compact(n: number): string {
  if (Math.abs(n) < 1000) return n < 10 ? n.toFixed(1) : String(Math.round(n));
  if (Math.abs(n) < 1e6) return `${(n / 1e3).toFixed(1)}k`;
  return `${(n / 1e6).toFixed(1)}M`;
}

/** `512 B`, `12.3 KiB`, `4.5 MiB` */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}

/** `$12.50`, `$0.04`, `$0.0415`, `$0.000003`: cents at least, micro-dollars at most (the API's rounding). */
export function usd(n: number): string {
  return `$${n.toFixed(6).replace(/0{1,4}$/, '')}`;
}

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2);
}
