/**
 * The edge refuses a bad training file with one message that names every quoted line and field:
 * `Invalid training file: 2 invalid line(s) of 5. line 2: prompt: expected string; line 4: ...
 * (and 3 more)` (edge/src/routes/files.ts, formatDatasetError). This splits it back into lines,
 * so each error can sit beside its line.
 */
export interface UploadErrors {
  summary: string;
  /** Line number (1-based) -> its errors; `file` errors are about the file as a whole. */
  byLine: Map<number, string[]>;
  file: string[];
  more: number;
}

export function parseUploadErrors(message: string): UploadErrors {
  const out: UploadErrors = { summary: message, byLine: new Map(), file: [], more: 0 };
  const head = message.match(/^(Invalid training file: [^.]*\.)\s*/);
  if (!head) return out;
  out.summary = head[1]!;
  let rest = message.slice(head[0].length);
  const more = rest.match(/\s*\(and (\d+) more\)$/);
  if (more) {
    out.more = Number(more[1]);
    rest = rest.slice(0, more.index);
  }
  for (const part of rest.split(/; (?=(?:line \d+|file): )/)) {
    const m = part.match(/^(?:line (\d+)|file): ([\s\S]*)$/);
    if (!m) continue;
    if (m[1] === undefined) out.file.push(m[2]!);
    else {
      const line = Number(m[1]);
      out.byLine.set(line, [...(out.byLine.get(line) ?? []), m[2]!]);
    }
  }
  return out;
}
