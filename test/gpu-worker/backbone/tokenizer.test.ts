import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointError } from '../../../gpu-worker/src/backbone/checkpoint/index.ts';
import { type BackboneTokenizer, loadTokenizer } from '../../../gpu-worker/src/backbone/tokenizer/index.ts';
import {
  BYTE_CHARS,
  TINY_TOKENIZER_SIZE,
  type TinyCheckpoint,
  writeTinyCheckpoint,
} from '../../helpers/tiny-checkpoint.ts';

let root: string;
let n = 0;
let tiny: TinyCheckpoint;
let tok: BackboneTokenizer;
const fresh = () => join(root, `t${n++}`);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ladder-tokenizer-'));
  tiny = await writeTinyCheckpoint(fresh(), { architecture: 'qwen2' });
  tok = await loadTokenizer(tiny.dir);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A copy of the tiny checkpoint with tokenizer_config.json changed. */
async function withTokenizerConfig(change: (config: Record<string, unknown>) => void): Promise<string> {
  const copy = await writeTinyCheckpoint(fresh(), { architecture: 'qwen2' });
  const file = join(copy.dir, 'tokenizer_config.json');
  const config = JSON.parse(await readFile(file, 'utf8'));
  change(config);
  await writeFile(file, JSON.stringify(config));
  return copy.dir;
}

async function refusal(fn: () => Promise<unknown> | unknown): Promise<string> {
  try {
    await fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CheckpointError);
    return (e as Error).message;
  }
  throw new Error('expected a CheckpointError');
}

const byteToken = (text: string) => Array.from(new TextEncoder().encode(text), (b) => BYTE_CHARS[b]).join('');

describe('tokenizer: encode and decode', () => {
  it('covers the model vocab and knows its special tokens', () => {
    expect(tok.vocabSize).toBe(TINY_TOKENIZER_SIZE);
    expect(tiny.config.vocabSize).toBeGreaterThanOrEqual(tok.vocabSize);
    expect(tok.tokenToId('<|endoftext|>')).toBe(tiny.tokens.endOfText);
    expect(tok.tokenToId('<|im_start|>')).toBe(tiny.tokens.imStart);
    expect(tok.tokenToId('<|im_end|>')).toBe(tiny.tokens.imEnd);
    expect(tok.eos).toEqual({ token: '<|im_end|>', id: tiny.tokens.imEnd });
    expect(tok.pad).toEqual({ token: '<|endoftext|>', id: tiny.tokens.endOfText });
    expect(tok.bos).toBeUndefined(); // bos_token: null, as Qwen2 ships it
    expect(tok.stopTokenIds).toEqual([tiny.tokens.imEnd, tiny.tokens.endOfText]); // + generation_config.json
    expect([...tok.specialTokens]).toEqual([
      ['<|endoftext|>', tiny.tokens.endOfText],
      ['<|im_start|>', tiny.tokens.imStart],
      ['<|im_end|>', tiny.tokens.imEnd],
    ]);
    expect(tok.isSpecial(tiny.tokens.imEnd)).toBe(true);
    expect(tok.isSpecial(tok.tokenToId('Hello')!)).toBe(false);
  });

  it('applies the BPE merges (byte-level: a space is part of the next word)', () => {
    expect(tok.encode('Hello World')).toEqual([tok.tokenToId('Hello'), tok.tokenToId(byteToken(' World'))]);
    // 'é' is merged from its two bytes; '€' only partly (E2 82 | AC); '東' stays three byte tokens.
    expect(tok.encode('é')).toEqual([tok.tokenToId(byteToken('é'))]);
    expect(tok.encode('€')).toEqual([tok.tokenToId(BYTE_CHARS[0xe2]! + BYTE_CHARS[0x82]!), 0xac]);
    expect(tok.encode('東')).toEqual([0xe6, 0x9d, 0xb1]);
  });

  it.each([
    'Hello World',
    'the cat is here .',
    'naïve café — 東京 🚀 €5',
    '  leading, trailing and\n\n\tmixed   whitespace  ',
    'emoji family 👨‍👩‍👧 and combining e\u0301',
    '',
  ])('round-trips %j', (text) => {
    const ids = tok.encode(text);
    for (const id of ids) expect(id).toBeLessThan(tok.vocabSize);
    expect(tok.decode(ids)).toBe(text);
  });

  it('encodes special-token strings in text as text; the chat template writes the special ids', () => {
    const text = tok.encode('<|im_start|>user\nHi<|im_end|>');
    expect(text.filter((id) => tok.isSpecial(id))).toEqual([]);
    expect(tok.decode(text)).toBe('<|im_start|>user\nHi<|im_end|>');
    const ids = tok.encodeChat([{ role: 'user', content: 'Hi' }]);
    expect(ids[0]).toBe(tiny.tokens.imStart);
    expect(ids.filter((id) => tok.isSpecial(id))).toEqual([tiny.tokens.imStart, tiny.tokens.imEnd]);
    expect(tok.decode(ids)).toBe('<|im_start|>user\nHi<|im_end|>\n');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('user\nHi\n');
  });

  it('decodes padded model-vocab ids (beyond the tokenizer) to nothing', () => {
    expect(tok.decode([tiny.config.vocabSize - 1, 0x41])).toBe('A');
    expect(() => tok.decode([-1])).toThrow(/-1 is not a token id/);
  });
});

describe('tokenizer: special tokens from the config files', () => {
  it('reads eos_token written as an AddedToken object', async () => {
    const dir = await withTokenizerConfig((c) => {
      c.eos_token = {
        __type: 'AddedToken',
        content: '<|endoftext|>',
        lstrip: false,
        normalized: false,
        rstrip: false,
        single_word: false,
        special: true,
      };
    });
    const t = await loadTokenizer(dir);
    expect(t.eosTokenId).toBe(tiny.tokens.endOfText);
    expect(t.stopTokenIds).toEqual([tiny.tokens.endOfText, tiny.tokens.imEnd]);
  });

  it('falls back to generation_config.json eos_token_id (a single id) when tokenizer_config has none', async () => {
    const dir = await withTokenizerConfig((c) => {
      delete c.eos_token;
    });
    await writeFile(
      join(dir, 'generation_config.json'),
      JSON.stringify({ eos_token_id: tiny.tokens.endOfText }),
    );
    const t = await loadTokenizer(dir);
    expect(t.eos).toEqual({ token: '<|endoftext|>', id: tiny.tokens.endOfText });
    expect(t.stopTokenIds).toEqual([tiny.tokens.endOfText]);
  });

  it('names the file and field of a special token the vocabulary lacks, or an id out of range', async () => {
    const dir = await withTokenizerConfig((c) => {
      c.eos_token = '</s>';
    });
    expect(await refusal(() => loadTokenizer(dir))).toMatch(
      /tokenizer_config\.json: eos_token '<\/s>' is not in .*tokenizer\.json/,
    );
    await writeFile(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [5, 9999] }));
    await writeFile(join(dir, 'tokenizer_config.json'), '{}');
    expect(await refusal(() => loadTokenizer(dir))).toMatch(
      /generation_config\.json: eos_token_id\[1\] 9999 is not a token id/,
    );
  });
});

describe('tokenizer: chat template', () => {
  const chat = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Hi there' },
  ];

  it('renders ChatML, with and without the generation prompt', () => {
    const head = '<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n';
    expect(tok.applyChatTemplate(chat, { addGenerationPrompt: true })).toBe(`${head}<|im_start|>assistant\n`);
    expect(tok.applyChatTemplate(chat)).toBe(head);
    expect(tok.hasChatTemplate()).toBe(true);
  });

  it('encodes a rendered chat with each ChatML marker as one special id', () => {
    const ids = tok.encodeChat(chat, { addGenerationPrompt: true });
    expect(ids.filter((id) => id === tiny.tokens.imStart)).toHaveLength(3);
    expect(ids.filter((id) => id === tiny.tokens.imEnd)).toHaveLength(2);
    expect(tok.decode(ids)).toBe(tok.applyChatTemplate(chat, { addGenerationPrompt: true }));
  });

  it('passes special tokens and extra variables to the template', async () => {
    const dir = await withTokenizerConfig((c) => {
      c.bos_token = '<|endoftext|>';
      c.chat_template =
        '{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}{% if think %}+{% endif %}';
    });
    const t = await loadTokenizer(dir);
    expect(t.applyChatTemplate(chat, { variables: { think: true } })).toBe(
      '<|endoftext|>[system] You are terse.<|im_end|>[user] Hi there<|im_end|>+',
    );
  });

  it('picks a named template from a list (default unless asked)', async () => {
    const dir = await withTokenizerConfig((c) => {
      c.chat_template = [
        { name: 'default', template: 'D{{ messages | length }}' },
        { name: 'tool_use', template: 'T{{ tools | length }}' },
      ];
    });
    const t = await loadTokenizer(dir);
    expect(t.applyChatTemplate(chat)).toBe('D2');
    expect(t.applyChatTemplate(chat, { templateName: 'tool_use', tools: [{}, {}, {}] })).toBe('T3');
    expect(await refusal(() => t.applyChatTemplate(chat, { templateName: 'rag' }))).toMatch(
      /tokenizer_config\.json: chat_template has no template named 'rag' \(it has: default, tool_use\)/,
    );
  });

  it('reads chat_template.jinja when tokenizer_config.json has no template', async () => {
    const dir = await withTokenizerConfig((c) => {
      delete c.chat_template;
    });
    const t = await loadTokenizer(dir);
    expect(t.hasChatTemplate()).toBe(false);
    expect(await refusal(() => t.applyChatTemplate(chat))).toMatch(
      /tokenizer_config\.json: chat_template is missing/,
    );
    await writeFile(join(dir, 'chat_template.jinja'), '{% for m in messages %}<{{ m.content }}>{% endfor %}');
    expect((await loadTokenizer(dir)).applyChatTemplate(chat)).toBe('<You are terse.><Hi there>');
  });

  it('names the file and field when a template does not parse or raises', async () => {
    const broken = await loadTokenizer(
      await withTokenizerConfig((c) => {
        c.chat_template = '{% for m in messages %}{{ m.content }';
      }),
    );
    expect(await refusal(() => broken.applyChatTemplate(chat))).toMatch(
      /tokenizer_config\.json: chat_template cannot be parsed/,
    );
    const raising = await loadTokenizer(
      await withTokenizerConfig((c) => {
        c.chat_template = "{{ raise_exception('Conversation roles must alternate') }}";
      }),
    );
    expect(await refusal(() => raising.applyChatTemplate(chat))).toMatch(
      /tokenizer_config\.json: chat_template failed to render \(Conversation roles must alternate\)/,
    );
  });
});

describe('tokenizer: broken or missing files', () => {
  it('names tokenizer.json when it is missing, not JSON, or has no model', async () => {
    const copy = await writeTinyCheckpoint(fresh(), { architecture: 'llama' });
    const file = join(copy.dir, 'tokenizer.json');
    await rm(file);
    expect(await refusal(() => loadTokenizer(copy.dir))).toMatch(/tokenizer\.json: file is missing/);
    await writeFile(file, '{"model": {"type": "BPE", ');
    expect(await refusal(() => loadTokenizer(copy.dir))).toMatch(
      /tokenizer\.json: content is not valid JSON/,
    );
    await writeFile(file, JSON.stringify({ added_tokens: [] }));
    expect(await refusal(() => loadTokenizer(copy.dir))).toMatch(/tokenizer\.json: model is missing/);
    await writeFile(
      file,
      JSON.stringify({ added_tokens: [{ id: 'x', content: 'a' }], model: { type: 'BPE' } }),
    );
    expect(await refusal(() => loadTokenizer(copy.dir))).toMatch(
      /tokenizer\.json: added_tokens\[0\]\.id is invalid/,
    );
    await writeFile(file, JSON.stringify({ model: { type: 'Mystery' } }));
    expect(await refusal(() => loadTokenizer(copy.dir))).toMatch(
      /tokenizer\.json: model \(Mystery\) cannot be loaded \(Unknown TokenizerModel type: Mystery\)/,
    );
    await writeFile(file, JSON.stringify({ model: { type: 'BPE', vocab: { a: 0 } } })); // no merges
    expect(await refusal(() => loadTokenizer(copy.dir))).toMatch(
      /tokenizer\.json: model \(BPE\) cannot be loaded/,
    );
  });

  it('names tokenizer_config.json when it is not JSON, and loads without it', async () => {
    const copy = await writeTinyCheckpoint(fresh(), { architecture: 'llama' });
    const file = join(copy.dir, 'tokenizer_config.json');
    await writeFile(file, 'chat_template: nope');
    expect(await refusal(() => loadTokenizer(copy.dir))).toMatch(
      /tokenizer_config\.json: content is not valid JSON/,
    );
    await rm(file);
    const t = await loadTokenizer(copy.dir);
    expect(t.decode(t.encode('still works'))).toBe('still works');
    expect(t.eosTokenId).toBe(tiny.tokens.imEnd); // from generation_config.json
  });
});

describe('tokenizer: incremental decoding for streaming', () => {
  it('emits only whole characters, and everything once', () => {
    const text = 'A€é🚀x 東京 Hello World!';
    const ids = tok.encode(text);
    const decoder = tok.createDecoder();
    const chunks = ids.map((id) => decoder.push(id));
    const tail = decoder.flush();
    expect(chunks.join('') + tail).toBe(text);
    expect(tail).toBe('');
    for (const c of chunks) expect(c).not.toContain('\uFFFD');
    // Tokens that end inside a character emit nothing until it completes: E2 82 | AC, F0 | 9F | 9A | 80, E6 | 9D | B1...
    expect(chunks.filter((c) => c === '').length).toBeGreaterThanOrEqual(1 + 3 + 2 + 2);
    // Each chunk is whole characters: decoding the ids so far gives exactly the text emitted so far.
    let emitted = '';
    for (let i = 0; i < ids.length; i++) {
      emitted += chunks[i];
      if (chunks[i] !== '') expect(tok.decode(ids.slice(0, i + 1))).toBe(emitted);
    }
  });

  it('holds back an unfinished character until flush, and can skip special tokens', () => {
    const decoder = tok.createDecoder({ skipSpecialTokens: true });
    expect(decoder.push([0x48, 0x69])).toBe('Hi');
    expect(decoder.push(tiny.tokens.imEnd)).toBe('');
    expect(decoder.push(0xe2)).toBe('');
    expect(decoder.push(0x82)).toBe('');
    expect(decoder.flush()).toBe('\uFFFD'); // generation stopped inside '€'
    expect(decoder.tokenIds).toEqual([0x48, 0x69, tiny.tokens.imEnd, 0xe2, 0x82]);
  });
});
