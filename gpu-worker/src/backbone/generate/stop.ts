/**
 * Streams decoded text while watching for stop sequences: text that could still turn into a stop
 * sequence (a suffix that is a prefix of one) is held back, so a client never sees part of a
 * stop string, and the output ends right before the first complete one. Text ending in U+FFFD
 * (an incomplete multi-byte character) is held back too until the next token completes it.
 */
export class StopWatcher {
  private emitted = 0;
  stopped = false;

  constructor(private readonly stops: readonly string[]) {}

  /** Given the whole decoded text so far, the new text that is safe to emit. */
  push(text: string): string {
    if (this.stopped) return '';
    let end = text.length;
    for (const s of this.stops) {
      const at = text.indexOf(s, Math.max(0, this.emitted - s.length + 1));
      if (at >= 0 && at < end) {
        end = at;
        this.stopped = true;
      }
    }
    if (!this.stopped) {
      end = text.endsWith('\uFFFD') ? text.length - 1 : text.length;
      for (const s of this.stops) {
        for (let k = Math.min(s.length - 1, end); k > 0; k--) {
          if (text.slice(end - k, end) === s.slice(0, k)) {
            end = Math.min(end, end - k);
            break;
          }
        }
      }
    }
    const delta = text.slice(this.emitted, Math.max(this.emitted, end));
    this.emitted = Math.max(this.emitted, end);
    return delta;
  }

  /** Length of the text emitted so far (where the output ends once a stop sequence is seen). */
  get emittedLength(): number {
    return this.emitted;
  }

  /** At the end of generation: whatever was held back (no stop sequence completed). */
  flush(text: string): string {
    if (this.stopped) return '';
    const delta = text.slice(this.emitted);
    this.emitted = text.length;
    return delta;
  }
}
