import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SAMPLING_DEFAULTS, type SamplingParams } from '../../../gpu-worker/src/backbone/generate/index.ts';
import {
  ComputeGate,
  Scheduler,
  ServingModel,
  workerMetrics,
} from '../../../gpu-worker/src/serving/index.ts';
import { Rng } from '../../../gpu-worker/src/util/rng.ts';
import { TINY_TOKENIZER_SIZE, writeTinyCheckpoint } from '../../helpers/tiny-checkpoint.ts';

const root = mkdtempSync(join(tmpdir(), 'ladder-detok-'));
let model: ServingModel;

beforeAll(async () => {
  const ckpt = await writeTinyCheckpoint(join(root, 'backbone'), { architecture: 'llama', seed: 11 });
  model = await ServingModel.open({ backboneDir: ckpt.dir, cacheDir: join(root, 'cache') });
}, 120_000);

afterAll(async () => {
  await model?.dispose();
  rmSync(root, { recursive: true, force: true });
});

const options = { maxBatch: 8, maxBatchTokens: 4096, maxQueue: 64, maxQueuePerTenant: 64, batchWaitMs: 0 };

/** A scheduler whose tokenizer counts the token ids it is asked to decode. */
function countingScheduler() {
  const tok = model.tokenizer;
  const counted = { ids: 0 };
  const decode = tok.decode.bind(tok);
  tok.decode = (ids, o) => {
    counted.ids += ids.length;
    return decode(ids, o);
  };
  const scheduler = new Scheduler(model, new ComputeGate(), workerMetrics(), {
    ...options,
    prefixCacheBytes: 0,
  });
  return {
    scheduler,
    counted,
    async close() {
      await scheduler.close();
      tok.decode = decode;
    },
  };
}

const sampled = (over: Partial<SamplingParams>): SamplingParams => ({
  ...SAMPLING_DEFAULTS,
  temperature: 1.5,
  maxTokens: 96,
  ...over,
});

describe('serving: text streamed a token at a time', () => {
  it('decodes random token streams with multi-byte characters to the full decode, only whole characters at a time', () => {
    const tok = model.tokenizer;
    const pieces = ['A€é', '🚀', ' 東京', 'Hello World', ' ünïcödé', '\n\n', 'x', '€€', 'ß'];
    const r = new Rng(5);
    for (let trial = 0; trial < 200; trial++) {
      const ids: number[] = [];
      while (ids.length < 40) {
        const kind = r.int(4);
        if (kind === 0)
          ids.push(r.int(TINY_TOKENIZER_SIZE)); // any token: bytes, merges, specials
        else if (kind === 1)
          ids.push(0x80 + r.int(0x80)); // a lone high byte: broken UTF-8
        else ids.push(...tok.encode(pieces[r.int(pieces.length)]!, { addSpecialTokens: false }));
      }
      const decoder = tok.createDecoder({ skipSpecialTokens: true });
      const chunks = ids.map((id) => decoder.push(id));
      const whole = tok.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false });
      expect(chunks.join('') + decoder.flush(), `trial ${trial}`).toBe(whole);
    }
  });

  it('decodes each token once (linear work), and the text, the stream and a stop sequence agree with the full decode', async () => {
    const run = countingScheduler();
    try {
      const prompt = model.tokenizer.encode('Hello World, the');
      const deltas: string[] = [];
      const out = await run.scheduler.submit({
        requestId: 'r1',
        tenant: 't',
        prompt,
        params: sampled({}),
        seed: 3,
        adapter: null,
        onDelta: (d) => deltas.push(d),
      });
      expect(out.tokens.length).toBeGreaterThan(48);
      // Re-decoding the whole sequence per token reads n(n+1)/2 ids (4,656 for 96 tokens).
      expect(run.counted.ids).toBeLessThan(8 * out.tokens.length);
      const full = model.tokenizer.decode(out.tokens, { skipSpecialTokens: true });
      expect(out.text).toBe(full);
      expect(deltas.join('')).toBe(full);
      for (const d of deltas.slice(0, -1)) expect(d.endsWith('\uFFFD') && d.length === 1).toBe(false);

      // A stop string taken from the middle of that text: the output ends right before it.
      const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
      const cut = full.indexOf(stop);
      const streamed: string[] = [];
      const stopped = await run.scheduler.submit({
        requestId: 'r2',
        tenant: 't',
        prompt,
        params: sampled({ stop: [stop] }),
        seed: 3,
        adapter: null,
        onDelta: (d) => streamed.push(d),
      });
      expect(stopped.finishReason).toBe('stop');
      expect(stopped.text).toBe(full.slice(0, cut));
      expect(streamed.join('')).toBe(full.slice(0, cut));
    } finally {
      await run.close();
    }
  });
});
