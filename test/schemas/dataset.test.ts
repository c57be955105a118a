import { describe, expect, it } from 'vitest';
import {
  ChatLine,
  type DatasetValidation,
  DatasetValidator,
  formatDatasetError,
  validateDataset,
} from '../../schemas/index.ts';

const jsonl = (...lines: unknown[]) =>
  lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n');

function messages(v: DatasetValidation): string[] {
  return v.ok ? [] : v.errors.map(formatDatasetError);
}

const chat = {
  messages: [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello' },
  ],
};

describe('dataset lines: each format parses', () => {
  it('chat', () => {
    const v = validateDataset(jsonl(chat, { messages: [{ role: 'assistant', content: '' }] }));
    expect(v.ok).toBe(true);
    expect(v.format).toBe('chat');
    expect(v.lines).toEqual([
      { line: 1, format: 'chat', value: chat },
      { line: 2, format: 'chat', value: { messages: [{ role: 'assistant', content: '' }] } },
    ]);
  });

  it('prompt/completion, with an empty prompt allowed', () => {
    const v = validateDataset(jsonl({ prompt: '2+2=', completion: '4' }, { prompt: '', completion: 'x' }));
    expect(v.ok).toBe(true);
    expect(v.format).toBe('completion');
    expect(v.lines.map((l) => l.value)).toEqual([
      { prompt: '2+2=', completion: '4' },
      { prompt: '', completion: 'x' },
    ]);
  });

  it('classification', () => {
    const v = validateDataset(
      jsonl({ text: 'great film', label: 'positive' }, { text: 'dull', label: 'neg' }),
    );
    expect(v.ok).toBe(true);
    expect(v.format).toBe('classification');
    expect(v.lines[1]).toEqual({ line: 2, format: 'classification', value: { text: 'dull', label: 'neg' } });
  });

  it('skips blank lines but keeps editor line numbers; CRLF, BOM and a missing final newline are fine', () => {
    const text = `\uFEFF${JSON.stringify({ prompt: 'a', completion: 'b' })}\r\n\r\n   \n${JSON.stringify({ prompt: 'c', completion: 'd' })}`;
    const v = validateDataset(text);
    expect(v.ok).toBe(true);
    expect(v.lines.map((l) => l.line)).toEqual([1, 4]);
    expect(v.lineCount).toBe(2);
    expect(v.bytes).toBe(new TextEncoder().encode(text).length);
  });

  it('the schemas are strict objects usable on their own', () => {
    expect(ChatLine.safeParse(chat).success).toBe(true);
    expect(ChatLine.safeParse({ ...chat, extra: 1 }).success).toBe(false);
  });
});

describe('dataset lines: errors name the line and the field', () => {
  it('reports several broken lines at once, in order', () => {
    const text = jsonl(
      chat, // 1
      {
        messages: [
          { role: 'user', content: 'q' },
          { role: 'bot', content: 'a' },
        ],
      }, // 2
      '{"messages": [', // 3
      { messages: [{ role: 'user', content: 'only a question' }] }, // 4
      { messages: [{ role: 'assistant', content: 7, name: 'x' }] }, // 5
      '', // 6
      { messages: [{ role: 'user' }, { role: 'assistant', content: 'a' }] }, // 7
      { messages: [] }, // 8
      { messages: 'hello' }, // 9
      [1, 2], // 10
      { question: 'q' }, // 11
      chat, // 12
    );
    const v = validateDataset(text);
    expect(v.ok).toBe(false);
    if (v.ok) return;
    const got = messages(v);
    expect(got[0]).toBe('line 2: messages.1.role: expected one of system|user|assistant');
    expect(got[1]).toMatch(/^line 3: not valid JSON: /);
    expect(got.slice(2)).toEqual([
      'line 4: messages: must hold at least one assistant message (the loss is on assistant turns)',
      'line 5: messages.0.content: expected a string, got a number',
      'line 5: messages.0.name: unknown field',
      'line 7: messages.0.content: required',
      'line 8: messages: must hold at least one message',
      'line 9: messages: expected an array, got a string',
      'line 10: expected a JSON object, got an array',
      'line 11: not a dataset line: expected one of {"messages"}, {"prompt","completion"}, {"text","label"}',
    ]);
    expect(v.invalidLineCount).toBe(9);
    expect(v.errorCount).toBe(10);
    expect(v.limitExceeded).toBe(false);
    // The good lines are still there for a caller that skips the bad ones.
    expect(v.lines.map((l) => l.line)).toEqual([1, 12]);
  });

  it('names fields of the other formats', () => {
    const v = validateDataset(
      jsonl(
        { prompt: 'p', completion: '' },
        { prompt: 1, completion: 'c', extra: true },
        { completion: 'c' },
      ),
    );
    expect(messages(v)).toEqual([
      'line 1: completion: must not be empty',
      'line 2: prompt: expected a string, got a number',
      'line 2: extra: unknown field',
      'line 3: prompt: required',
    ]);
    const c = validateDataset(
      jsonl({ text: 't', label: ' pos' }, { text: '', label: 'neg' }, { text: 't', label: 3 }),
    );
    expect(messages(c)).toEqual([
      'line 1: label: must not start or end with whitespace',
      'line 2: text: must not be empty',
      'line 3: label: expected a string, got a number',
    ]);
  });

  it('refuses a second format in one file, naming both lines', () => {
    const v = validateDataset(jsonl('', chat, { prompt: 'p', completion: 'c' }, { text: 't', label: 'l' }));
    expect(v.format).toBe('chat');
    expect(messages(v)).toEqual([
      'line 3: a completion line {"prompt","completion"}, but line 2 made this a chat file (one format per file)',
      'line 4: a classification line {"text","label"}, but line 2 made this a chat file (one format per file)',
    ]);
  });

  it('holds a file to a required format', () => {
    const v = validateDataset(jsonl({ prompt: 'p', completion: 'c' }), { format: 'classification' });
    expect(messages(v)).toEqual([
      'line 1: a completion line {"prompt","completion"}, but this file must hold classification lines',
    ]);
  });

  it('refuses an empty file', () => {
    const v = validateDataset('\n  \n');
    expect(v.ok).toBe(false);
    expect(v.format).toBeNull();
    expect(messages(v)).toEqual(['file: no examples (the file has no non-blank lines)']);
  });
});

describe('dataset limits', () => {
  const line = JSON.stringify({ prompt: 'p', completion: 'c' });

  it('stops at the line limit and names the first line over it', () => {
    const v = validateDataset(jsonl(line, '', line, line, line), { maxLines: 2 });
    expect(v.ok).toBe(false);
    if (v.ok) return;
    expect(v.limitExceeded).toBe(true);
    expect(messages(v)).toEqual(['line 4: more than 2 examples (the limit)']);
    expect(v.lineCount).toBe(2);
  });

  it('stops at the byte limit (UTF-8 bytes, not characters)', () => {
    const text = JSON.stringify({ prompt: 'é€', completion: 'c' }); // 2 + 3 bytes for 2 characters
    const bytes = new TextEncoder().encode(text).length;
    expect(validateDataset(text, { maxBytes: bytes }).ok).toBe(true);
    const v = validateDataset(text, { maxBytes: bytes - 1 });
    expect(messages(v)).toEqual([`file: larger than the limit of ${bytes - 1} bytes`]);
    expect(!v.ok && v.limitExceeded).toBe(true);
  });

  it('stops at a line longer than maxLineBytes, however it is chunked, and names that line', () => {
    const long = JSON.stringify({ prompt: 'é'.repeat(40), completion: 'c' }); // 80 + 29 bytes
    const bytes = new TextEncoder().encode(long).length;
    expect(validateDataset(jsonl(line, long), { maxLineBytes: bytes }).ok).toBe(true);
    for (const size of [1, 7, 1000]) {
      const text = jsonl(line, '', long, line);
      const validator = new DatasetValidator({ maxLineBytes: bytes - 1 });
      for (let at = 0; at < text.length; at += size) validator.write(text.slice(at, at + size));
      expect(validator.hasErrors).toBe(true);
      const v = validator.end();
      expect(messages(v), `chunks of ${size}`).toEqual([
        `line 3: longer than the limit of ${bytes - 1} bytes for one line`,
      ]);
      expect(!v.ok && v.limitExceeded).toBe(true);
    }
  });

  it('keeps only maxErrors details but counts them all', () => {
    const v = validateDataset(jsonl('x', 'y', 'z', line), { maxErrors: 2 });
    expect(v.ok).toBe(false);
    if (v.ok) return;
    expect(v.errors.map((e) => e.line)).toEqual([1, 2]);
    expect(v.errorCount).toBe(3);
  });

  it('keepLines: false keeps the verdict, not the lines', () => {
    const v = validateDataset(jsonl(line, line), { keepLines: false });
    expect(v.ok).toBe(true);
    expect(v.lines).toEqual([]);
    expect(v.lineCount).toBe(2);
  });
});

describe('DatasetValidator (streaming)', () => {
  it('gives the same answer for any chunking, including splits inside a character or a CRLF', () => {
    const text = jsonl(
      { text: 'café ☕ 𝄞', label: 'a' },
      '',
      '{"text": "broken"',
      { text: 'ok', label: 'b', extra: 1 },
      { text: 'x', label: 'c' },
    ).replaceAll('\n', '\r\n');
    const whole = validateDataset(text);
    for (const size of [1, 2, 3, 7, 64]) {
      const validator = new DatasetValidator();
      for (let i = 0; i < text.length; i += size) validator.write(text.slice(i, i + size));
      expect(validator.end()).toEqual(whole);
    }
    expect(messages(whole)).toEqual([
      expect.stringMatching(/^line 3: not valid JSON: /),
      'line 4: extra: unknown field',
    ]);
    expect(whole.bytes).toBe(new TextEncoder().encode(text).length);
  });

  it('refuses writes after end', () => {
    const validator = new DatasetValidator();
    validator.end();
    expect(() => validator.write('{}')).toThrow(/after end/);
  });
});
