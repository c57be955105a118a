import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type BackboneTokenizer, loadTokenizer } from '../../../gpu-worker/src/backbone/tokenizer/index.ts';
import { RequestTooLargeError } from '../../../gpu-worker/src/serving/index.ts';
import type { ServingModel } from '../../../gpu-worker/src/serving/model.ts';
import { encodePrompt } from '../../../gpu-worker/src/serving/requests.ts';
import { writeTinyCheckpoint } from '../../helpers/tiny-checkpoint.ts';

let root: string;
let tok: BackboneTokenizer;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ladder-prompt-bound-'));
  tok = await loadTokenizer((await writeTinyCheckpoint(join(root, 'tiny'), { architecture: 'qwen2' })).dir);
});
afterAll(() => rm(root, { recursive: true, force: true }));

/** What encodePrompt reads of the serving model: its tokenizer, chat template and context size. */
const modelWith = (maxPositions: number) =>
  ({
    tokenizer: tok,
    config: { maxPositions },
    backbone: {
      encodeChat: (m: { role: string; content: string }[]) =>
        tok.encodeChat(m, { addGenerationPrompt: true }),
    },
  }) as unknown as ServingModel;

describe('the prompt length checked before tokenizing', () => {
  it('refuses a prompt whose bytes alone exceed the context, without tokenizing it', () => {
    const model = modelWith(64);
    const encode = vi.spyOn(tok, 'encode');
    const bytes = 64 * tok.maxTokenBytes * 4 + 1;
    expect(() => encodePrompt(model, { text: 'x'.repeat(bytes) })).toThrow(RequestTooLargeError);
    expect(() => encodePrompt(model, { messages: [{ role: 'user', content: 'y'.repeat(bytes) }] })).toThrow(
      /bytes, at least \d+ tokens, over the backbone's 64 positions/,
    );
    expect(encode).not.toHaveBeenCalled();
    encode.mockRestore();
  });

  it('tokenizes a prompt the bound cannot rule out', () => {
    expect(tok.maxTokenBytes).toBeGreaterThan(1);
    expect(encodePrompt(modelWith(64), { text: 'hello world' }).length).toBeGreaterThan(0);
  });
});
