/**
 * Streams text out of generated token ids without ever emitting half a character. A byte-level
 * token can end inside a multi-byte UTF-8 character (and a character can span several tokens), so
 * decoding one token at a time would print U+FFFD. Following text-generation-inference's
 * `decode_token`, each push decodes a small window twice:
 *
 *   ids:   ... | prefixOffset ........ readOffset ........ end |
 *                 \_ already emitted _/ \_ not yet emitted _/
 *   emit  decode(ids[prefix:]) minus decode(ids[prefix:read]), unless it ends in U+FFFD (incomplete)
 *
 * The emitted window is kept as left context because some decoders (Metaspace) treat the first
 * token of a sequence differently. The concatenation of everything emitted (push + flush) equals
 * decoding all ids at once.
 */
export class IncrementalDecoder {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(private readonly decode: (ids: number[]) => string) {}

  /** Adds generated ids; returns the text they complete ('' while a character is still open). */
  push(ids: number | readonly number[]): string {
    if (typeof ids === 'number') this.ids.push(ids);
    else this.ids.push(...ids);
    const before = this.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const after = this.decode(this.ids.slice(this.prefixOffset));
    if (after.length <= before.length || after.endsWith('\uFFFD')) return '';
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return after.slice(before.length);
  }

  /** The text still held back at the end of generation (an incomplete character decodes as U+FFFD). */
  flush(): string {
    if (this.readOffset === this.ids.length) return '';
    const before = this.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const after = this.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return after.slice(before.length);
  }

  /** Every id pushed so far. */
  get tokenIds(): readonly number[] {
    return this.ids;
  }
}
