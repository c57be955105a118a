/**
 * Content is text. A special-token string that a tenant types (`<|im_start|>system`, `<|eot_id|>`)
 * must tokenize as the characters it is, never as the control token: only the chat template's own
 * markers are special tokens. Two pieces make that possible:
 *
 * - SpecialTokenMatcher finds special-token strings in text, leftmost-longest, as the tokenizer
 *   library's added-token splitter does (lstrip/rstrip kept), so a rendered chat can be cut at
 *   the template's markers.
 * - ContentEscape hides the special-token strings of content from the template and the matcher.
 *   Before rendering, every string a chat passes to the template (message fields, tools,
 *   documents) is escaped:
 *
 *       special token k (in the matcher's list)   ->  ESC (k + 1) ESC
 *       ESC itself                                ->  ESC 0 ESC
 *
 *   ESC is a private-use character that the template's source does not contain, so after
 *   rendering every special-token string left in the text is the template's own, and every ESC
 *   sequence is content. The template still sees the content otherwise unchanged (trim, split on
 *   `</think>` and the like behave as before); only the special-token strings are masked.
 *
 * What remains is a rendered text that mixes template markers and escaped content; the tokenizer
 * cuts it at the markers, unescapes each text run and encodes it with special tokens switched off.
 * A template that writes content right next to half a special token (content `<|im_`, then the
 * template's `end|>`) could still spell one out; no known template does.
 */

/** An added token marked `special` in tokenizer.json, with the attributes the splitter honours. */
export interface SpecialToken {
  content: string;
  id: number;
  /** Whitespace to the token's left belongs to it (the text before is trimmed at its end). */
  lstrip: boolean;
  /** Whitespace to its right belongs to it. */
  rstrip: boolean;
}

/** A piece of text cut at special tokens: plain text, or one special token. */
export type Piece = { text: string } | { token: SpecialToken };

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export class SpecialTokenMatcher {
  readonly tokens: readonly SpecialToken[];
  private readonly byContent: ReadonlyMap<string, SpecialToken>;
  /** One alternation, longest first, so the leftmost match is also the longest there. */
  private readonly pattern: RegExp | undefined;

  constructor(tokens: readonly SpecialToken[]) {
    this.tokens = tokens.filter((t) => t.content !== '');
    this.byContent = new Map(this.tokens.map((t) => [t.content, t]));
    const contents = [...this.byContent.keys()].sort((a, b) => b.length - a.length);
    this.pattern = contents.length ? new RegExp(contents.map(escapeRegExp).join('|'), 'g') : undefined;
  }

  /** Whether the text spells out any special token. */
  test(text: string): boolean {
    if (!this.pattern) return false;
    this.pattern.lastIndex = 0;
    return this.pattern.test(text);
  }

  /** Replaces every special-token string in the text. */
  replace(text: string, by: (token: SpecialToken, index: number) => string): string {
    if (!this.pattern) return text;
    return text.replace(this.pattern, (m) => {
      const token = this.byContent.get(m)!;
      return by(token, this.tokens.indexOf(token));
    });
  }

  /**
   * The text cut at special tokens; a token's lstrip/rstrip trims the text next to it, as the
   * library's own splitting does.
   */
  split(text: string): Piece[] {
    const pieces: Piece[] = [];
    let start = 0;
    if (this.pattern) {
      this.pattern.lastIndex = 0;
      for (const m of text.matchAll(this.pattern)) {
        pieces.push({ text: text.slice(start, m.index) }, { token: this.byContent.get(m[0])! });
        start = m.index + m[0].length;
      }
    }
    pieces.push({ text: text.slice(start) });
    for (const [i, p] of pieces.entries()) {
      if (!('token' in p)) continue;
      const before = pieces[i - 1] as { text: string };
      const after = pieces[i + 1] as { text: string };
      if (p.token.lstrip) before.text = before.text.trimEnd();
      if (p.token.rstrip) after.text = after.text.trimStart();
    }
    return pieces.filter((p) => !('text' in p) || p.text !== '');
  }
}

/** Private-use code points tried for ESC, in order. */
const ESC_FIRST = 0xe000;
const ESC_LAST = 0xf8ff;

/** The escaping of one chat's strings; see the file comment. */
export class ContentEscape {
  readonly esc: string;
  private readonly sequence: RegExp;

  /** `avoid`: text the template writes itself (its source, the special tokens it is given). */
  constructor(
    private readonly matcher: SpecialTokenMatcher,
    avoid: readonly string[],
  ) {
    let code = ESC_FIRST;
    while (code <= ESC_LAST && avoid.some((s) => s.includes(String.fromCharCode(code)))) code++;
    if (code > ESC_LAST) {
      throw new Error('the chat template uses every private-use character: content cannot be escaped');
    }
    this.esc = String.fromCharCode(code);
    this.sequence = new RegExp(`${this.esc}(?:(\\d+)${this.esc})?`, 'g');
  }

  /** Strings escaped, anywhere inside arrays and plain objects; other values as they are. */
  escape<T>(value: T): T {
    if (typeof value === 'string') {
      const esc = this.esc;
      const escaped = value.replaceAll(esc, `${esc}0${esc}`);
      return this.matcher.replace(escaped, (_, k) => `${esc}${k + 1}${esc}`) as T;
    }
    if (Array.isArray(value)) return value.map((v) => this.escape(v)) as T;
    const proto = value !== null && typeof value === 'object' ? Object.getPrototypeOf(value) : undefined;
    if (proto === Object.prototype || proto === null) {
      return Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, this.escape(v)])) as T;
    }
    return value;
  }

  /** Whether a rendered text holds escaped content. */
  holdsEscapes(text: string): boolean {
    return text.includes(this.esc);
  }

  /** The content's own text back; throws when the template cut or changed an escape sequence. */
  unescape(text: string): string {
    return text.replace(this.sequence, (whole, index: string | undefined) => {
      const k = index === undefined ? Number.NaN : Number(index);
      if (k === 0) return this.esc;
      const token = this.matcher.tokens[k - 1];
      if (!token) {
        throw new Error(
          `the chat template cut or changed escaped content (${JSON.stringify(whole)}): ` +
            'it cannot be tokenized safely',
        );
      }
      return token.content;
    });
  }
}
