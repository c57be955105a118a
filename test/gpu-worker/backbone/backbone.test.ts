import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Backbone } from '../../../gpu-worker/src/backbone/index.ts';
import { writeTinyCheckpoint } from '../../helpers/tiny-checkpoint.ts';

const root = mkdtempSync(join(tmpdir(), 'ladder-backbone-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('Backbone: a model directory made ready to serve', () => {
  it('chats through the template, streams the text it returns, and counts usage', async () => {
    const ckpt = await writeTinyCheckpoint(join(root, 'llama'), { architecture: 'llama', seed: 9 });
    const backbone = await Backbone.open(ckpt.dir, { cacheDir: join(root, 'cache') });
    const messages = [{ role: 'user', content: 'héllo there' }];
    const deltas: string[] = [];
    const out = await backbone.complete(messages, { maxTokens: 12 }, { onDelta: (d) => deltas.push(d) });
    const promptIds = backbone.encodeChat(messages);
    expect(backbone.tokenizer.decode(promptIds)).toContain('<|im_start|>assistant');
    expect(out.usage).toEqual({ promptTokens: promptIds.length, completionTokens: out.tokens.length });
    expect(out.tokens.length).toBeGreaterThan(0);
    expect(out.text).toBe(backbone.tokenizer.decode(out.tokens, { skipSpecialTokens: true }));
    expect(deltas.join('')).toBe(out.text);
    // Greedy and seeded sampling are reproducible through the whole stack.
    expect((await backbone.complete(messages, { maxTokens: 12 })).tokens).toEqual(out.tokens);
    const hot = { maxTokens: 12, temperature: 1 };
    expect((await backbone.complete(messages, hot, { seed: 3 })).tokens).toEqual(
      (await backbone.complete(messages, hot, { seed: 3 })).tokens,
    );
    await backbone.dispose();
  });

  it('refuses a tokenizer whose ids the embedding cannot look up', async () => {
    const ckpt = await writeTinyCheckpoint(join(root, 'small-vocab'), { architecture: 'qwen2', seed: 1 });
    const configPath = join(ckpt.dir, 'config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    // Shrink the model's vocabulary below the tokenizer's (and its embedding to match).
    writeFileSync(configPath, JSON.stringify({ ...config, vocab_size: 100 }));
    await expect(Backbone.open(ckpt.dir, { cacheDir: join(root, 'cache') })).rejects.toThrow(
      /tokenizer\.json has \d+ token ids but config\.json vocab_size is 100/,
    );
  });
});
