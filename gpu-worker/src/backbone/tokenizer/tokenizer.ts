import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { CheckpointError, type CheckpointProblem, fail } from '../checkpoint/errors.ts';
import {
  type ChatMessage,
  type ChatTemplateOptions,
  renderChat,
  selectTemplate,
  type TemplateSource,
} from './chat-template.ts';
import { ContentEscape, type SpecialToken, SpecialTokenMatcher } from './content.ts';
import { readTokenizerFiles, type TokenizerFiles, tokenContent } from './files.ts';
import { IncrementalDecoder } from './incremental.ts';

export interface EncodeOptions {
  /** Let the post-processor add BOS/EOS as the model expects (default true; false for rendered chats). */
  addSpecialTokens?: boolean;
}

/**
 * A chat prepared for its template with its content escaped (see content.ts): render `messages`
 * (and `options`) with applyChatTemplate, then `encode` the rendered text, or any piece of it.
 */
export interface EscapedChat {
  messages: ChatMessage[];
  options: ChatTemplateOptions;
  /** Rendered text -> ids: the template's markers as special ids, the content as text. */
  encode(rendered: string): number[];
}

/** A tokenizer.json pipeline as the library takes it; `addedTokens` replaces its added_tokens. */
export type HfTokenizerFactory = (addedTokens: unknown[]) => HfTokenizer;

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
  /** The library's " ." -> "." clean-up; default from tokenizer_config.json (true when absent). */
  cleanUpTokenizationSpaces?: boolean;
}

/** A special token by name (from tokenizer_config.json) and its id (from tokenizer.json). */
export interface NamedToken {
  token: string;
  id: number;
}

/**
 * A model directory's tokenizer: tokenizer.json through @huggingface/tokenizers, special tokens and
 * the chat template from tokenizer_config.json, extra stop ids from generation_config.json.
 */
export class BackboneTokenizer {
  /** Highest token id + 1 (the model's vocab must be at least this). */
  readonly vocabSize: number;
  /**
   * The longest token's text in UTF-8 bytes: no token stands for more text than this (byte-level
   * and metaspace pieces are at least as long as the bytes they stand for), so a text of n bytes
   * is at least n / maxTokenBytes tokens (before normalization), known without tokenizing it.
   */
  readonly maxTokenBytes: number;
  readonly bos?: NamedToken;
  readonly eos?: NamedToken;
  readonly pad?: NamedToken;
  readonly unk?: NamedToken;
  /** Every id that ends generation: eos_token plus generation_config.json's eos_token_id(s). */
  readonly stopTokenIds: readonly number[];
  /** Every special added token, content -> id. */
  readonly specialTokens: ReadonlyMap<string, number>;
  private readonly specialIds: ReadonlySet<number>;
  private readonly specials: SpecialTokenMatcher;
  private readonly templates = new Map<string, TemplateSource | undefined>();
  private readonly escapes = new Map<TemplateSource, ContentEscape>();
  /** Built on first use: only text that spells out a special token needs it. */
  private plainText?: { hf: HfTokenizer; prefix: number[]; suffix: number[] };

  /**
   * `rebuild` builds the same pipeline with other added tokens: the tokenizer makes one without
   * its special tokens, to encode text in which they are spelled out.
   */
  constructor(
    private readonly hf: HfTokenizer,
    private readonly files: TokenizerFiles,
    private readonly rebuild: HfTokenizerFactory,
  ) {
    let maxId = -1;
    let maxBytes = 1;
    const enc = new TextEncoder();
    for (const [token, id] of hf.get_vocab(true)) {
      maxId = Math.max(maxId, id);
      maxBytes = Math.max(maxBytes, enc.encode(token).byteLength);
    }
    this.vocabSize = maxId + 1;
    this.maxTokenBytes = maxBytes;
    const special = new Map<string, number>();
    for (const t of files.tokenizer.added_tokens) if (t.special) special.set(t.content, t.id);
    this.specialTokens = special;
    this.specialIds = new Set(special.values());
    this.specials = new SpecialTokenMatcher(
      files.tokenizer.added_tokens
        .filter((t) => t.special)
        .map((t): SpecialToken => ({ content: t.content, id: t.id, lstrip: !!t.lstrip, rstrip: !!t.rstrip })),
    );

    const problems: CheckpointProblem[] = [];
    const named = (field: 'bos_token' | 'eos_token' | 'pad_token' | 'unk_token'): NamedToken | undefined => {
      const token = tokenContent(files.config[field]);
      if (token === undefined) return undefined;
      const id = hf.token_to_id(token);
      if (id === undefined) {
        problems.push({
          file: files.paths.config,
          field,
          detail: `'${token}' is not in ${files.paths.tokenizer}`,
        });
        return undefined;
      }
      return { token, id };
    };
    const [bos, eos, pad, unk] = [
      named('bos_token'),
      named('eos_token'),
      named('pad_token'),
      named('unk_token'),
    ];
    const gen = files.generation;
    const genEos =
      gen?.eos_token_id == null
        ? []
        : Array.isArray(gen.eos_token_id)
          ? gen.eos_token_id
          : [gen.eos_token_id];
    for (const [i, id] of genEos.entries()) {
      if (id >= this.vocabSize) {
        const field = Array.isArray(gen?.eos_token_id) ? `eos_token_id[${i}]` : 'eos_token_id';
        problems.push({
          file: files.paths.generation,
          field,
          detail: `${id} is not a token id (vocab size ${this.vocabSize})`,
        });
      }
    }
    if (problems.length) throw new CheckpointError(problems);
    // Only eos falls back to generation_config.json: generation must know when to stop.
    if (bos) this.bos = bos;
    const eosToken = eos ?? this.byId(genEos[0]);
    if (eosToken) this.eos = eosToken;
    if (pad) this.pad = pad;
    if (unk) this.unk = unk;
    this.stopTokenIds = [...new Set([...(this.eos ? [this.eos.id] : []), ...genEos])];
  }

  get bosTokenId(): number | undefined {
    return this.bos?.id;
  }

  get eosTokenId(): number | undefined {
    return this.eos?.id;
  }

  get padTokenId(): number | undefined {
    return this.pad?.id;
  }

  /**
   * Text to ids. The text is text: a special token spelled out in it (`<|endoftext|>`) encodes as
   * its characters, never as the special id; only the post-processor's own additions (a bos) are
   * special ids. Chats get their markers from the template through encodeChat / escapeChat.
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const addSpecialTokens = options.addSpecialTokens ?? true;
    // Text without special-token strings: the library's own encoding, unchanged.
    if (!this.specials.test(text)) return this.hf.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    const plain = this.textOnly();
    const ids = this.plainTextIds(text);
    return addSpecialTokens ? [...plain.prefix, ...ids, ...plain.suffix] : ids;
  }

  /** Ids the tokenizer does not know (a model's padded vocab rows) decode to nothing, as in HF tokenizers. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const known: number[] = [];
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0) throw new RangeError(`decode: ${id} is not a token id`);
      if (this.hf.id_to_token(id) !== undefined) known.push(id);
    }
    if (known.length === 0) return ''; // the library refuses an empty list
    return this.hf.decode(known, {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      ...(options.cleanUpTokenizationSpaces !== undefined
        ? { clean_up_tokenization_spaces: options.cleanUpTokenizationSpaces }
        : {}),
    });
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** For streaming: text of generated ids, emitted only in whole characters (no clean-up of spaces). */
  createDecoder(options: { skipSpecialTokens?: boolean } = {}): IncrementalDecoder {
    const opts = { skipSpecialTokens: options.skipSpecialTokens ?? false, cleanUpTokenizationSpaces: false };
    return new IncrementalDecoder((ids) => this.decode(ids, opts));
  }

  hasChatTemplate(name?: string): boolean {
    return this.template(name, false) !== undefined;
  }

  /** The chat rendered to a prompt string by the model's own template. */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    const source = this.template(options.templateName, true)!;
    return renderChat(source, messages, options, {
      bos_token: this.bos?.token,
      eos_token: this.eos?.token,
      pad_token: this.pad?.token,
      unk_token: this.unk?.token,
    });
  }

  /**
   * The chat through its template to ids, without adding special tokens again (the template has
   * them): the template's markers are special ids, the messages' content is text (escapeChat).
   */
  encodeChat(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): number[] {
    const chat = this.escapeChat(messages, options);
    return chat.encode(this.applyChatTemplate(chat.messages, chat.options));
  }

  /**
   * The chat's strings (messages, tools, documents) escaped for rendering, and the encoder of
   * what the template renders from them: training renders prefixes of one chat and encodes them
   * piece by piece, serving encodes the whole, and both get the same ids (content.ts).
   */
  escapeChat(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): EscapedChat {
    const escaper = this.contentEscape(options.templateName);
    const escapedOptions: ChatTemplateOptions = { ...options };
    if (options.tools) escapedOptions.tools = escaper.escape(options.tools);
    if (options.documents) escapedOptions.documents = escaper.escape(options.documents);
    return {
      messages: messages.map((m) => escaper.escape({ ...m })),
      options: escapedOptions,
      encode: (rendered) => this.encodeRendered(escaper, rendered),
    };
  }

  /** A render of escaped content: cut at the template's markers, each text run unescaped and encoded as text. */
  private encodeRendered(escaper: ContentEscape, rendered: string): number[] {
    // No content spelled out a special token: the library's own encoding, unchanged.
    if (!escaper.holdsEscapes(rendered)) return this.hf.encode(rendered, { add_special_tokens: false }).ids;
    const ids: number[] = [];
    for (const piece of this.specials.split(rendered)) {
      if ('token' in piece) ids.push(piece.token.id);
      else for (const id of this.plainTextIds(escaper.unescape(piece.text))) ids.push(id); // no spread: a run may be 1e5+ ids
    }
    return ids;
  }

  /** Text through the pipeline without special tokens (other added tokens still match). */
  private plainTextIds(text: string): number[] {
    const ids = this.textOnly().hf.encode(text, { add_special_tokens: false }).ids;
    const special = ids.find((id) => this.specialIds.has(id));
    if (special !== undefined) {
      // The model's own vocab/merges produced a special token's string: refuse rather than inject it.
      throw new Error(
        `${this.files.paths.tokenizer}: the text ${JSON.stringify(text.slice(0, 80))} encodes to the special ` +
          `token ${JSON.stringify(this.hf.id_to_token(special))} (${special}) even with special tokens off`,
      );
    }
    return ids;
  }

  private textOnly(): { hf: HfTokenizer; prefix: number[]; suffix: number[] } {
    if (!this.plainText) {
      const hf = this.rebuild(this.files.tokenizer.added_tokens.filter((t) => !t.special));
      // What the post-processor adds around a text (a bos, an eos), found around a probe.
      const probe = 'a';
      const bare = this.hf.encode(probe, { add_special_tokens: false }).ids;
      const full = this.hf.encode(probe, { add_special_tokens: true }).ids;
      const at = full.findIndex((_, i) => bare.every((id, j) => full[i + j] === id));
      if (at < 0 || bare.length === 0) {
        fail(
          this.files.paths.tokenizer,
          'post_processor',
          'adds tokens inside the text, not only around it: plain text cannot be encoded apart from them',
        );
      }
      this.plainText = { hf, prefix: full.slice(0, at), suffix: full.slice(at + bare.length) };
    }
    return this.plainText;
  }

  private contentEscape(templateName: string | undefined): ContentEscape {
    const source = this.template(templateName, true)!;
    let escaper = this.escapes.get(source);
    if (!escaper) {
      const named = [this.bos, this.eos, this.pad, this.unk].flatMap((t) => (t ? [t.token] : []));
      escaper = new ContentEscape(this.specials, [source.text, ...named, ...this.specialTokens.keys()]);
      this.escapes.set(source, escaper);
    }
    return escaper;
  }

  private byId(id: number | null | undefined): NamedToken | undefined {
    if (id == null) return undefined;
    const token = this.hf.id_to_token(id);
    return token === undefined ? undefined : { token, id };
  }

  private template(name: string | undefined, required: boolean): TemplateSource | undefined {
    const key = name ?? '';
    if (!this.templates.has(key)) {
      const { config, templateFile, paths } = this.files;
      this.templates.set(key, selectTemplate(config.chat_template, templateFile, paths, name));
    }
    const source = this.templates.get(key);
    if (!source && required) {
      fail(
        this.files.paths.config,
        'chat_template',
        `is missing (and there is no ${this.files.paths.templateFile})`,
      );
    }
    return source;
  }
}

/** Loads `<dir>/tokenizer.json` (+ tokenizer_config.json, generation_config.json, chat_template.jinja). */
export async function loadTokenizer(dir: string): Promise<BackboneTokenizer> {
  const files = await readTokenizerFiles(dir);
  const { config, tokenizer } = files;
  // The library reads token names as strings; tokenizer_config.json may hold AddedToken objects.
  const libConfig: Record<string, unknown> = { ...config };
  for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token'] as const) {
    const content = tokenContent(config[key]);
    if (content === undefined) delete libConfig[key];
    else libConfig[key] = content;
  }
  if (config.additional_special_tokens) {
    libConfig.additional_special_tokens = config.additional_special_tokens.map((t) => tokenContent(t));
  }
  // tokenizer.json from older writers may leave out stages; the library wants each key present.
  const libTokenizer = {
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    ...tokenizer,
  };
  const build: HfTokenizerFactory = (addedTokens) => {
    try {
      return new HfTokenizer({ ...libTokenizer, added_tokens: addedTokens }, libConfig);
    } catch (e) {
      fail(
        files.paths.tokenizer,
        `model (${tokenizer.model.type ?? 'no type'})`,
        `cannot be loaded (${(e as Error).message})`,
      );
    }
  };
  return new BackboneTokenizer(build(tokenizer.added_tokens), files, build);
}
