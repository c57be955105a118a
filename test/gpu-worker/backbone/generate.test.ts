import { describe, expect, it } from 'vitest';
import { BackboneStepper, generate, StopWatcher } from '../../../gpu-worker/src/backbone/generate/index.ts';
import { buildBackboneGraph, IO } from '../../../gpu-worker/src/backbone/graph/emit.ts';
import { toModelBytes } from '../../../gpu-worker/src/graph/index.ts';
import { createSession } from '../../../gpu-worker/src/runtime/index.ts';
import { memorySource, randomWeights, VARIANTS } from '../../helpers/tiny-backbone.ts';

const cfg = VARIANTS['llama (GQA, llama3 rope scaling)']!;

async function stepper(logits: 'all' | 'last') {
  const { graph } = await buildBackboneGraph(cfg, memorySource(randomWeights(cfg, 5)), {
    linear: { kind: 'fp32' },
    logits,
  });
  return new BackboneStepper(await createSession(toModelBytes(graph)), cfg);
}

const relClose = (a: Float32Array, b: Float32Array) => {
  const scale = Math.max(...Array.from(b, Math.abs));
  return Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i]!) / scale));
};

// Readable text for token ids, so stop sequences can be exercised without a tokenizer.
const detokenize = (ids: number[]) => ids.map((id) => String.fromCharCode(97 + (id % 26))).join('');

describe('backbone decoding', () => {
  it('incremental decoding with the KV cache equals a full recompute at every position', async () => {
    const s = await stepper('all');
    const seq = [7, 3, 55, 21, 9, 40, 1, 18, 33, 12];
    const full = await s.step({ ids: [seq], mask: [seq.map(() => 1)], positions: [seq.map((_, t) => t)] });
    const V = cfg.vocabSize;
    const fullLogits = full.outputs[IO.logits]!.data as Float32Array; // (1, 10, V)
    let out = await s.step({ ids: [seq.slice(0, 4)], mask: [[1, 1, 1, 1]], positions: [[0, 1, 2, 3]] });
    expect(relClose(out.lastLogits[0]!, fullLogits.subarray(3 * V, 4 * V))).toBeLessThan(1e-5);
    for (let t = 4; t < seq.length; t++) {
      out = await s.step({
        ids: [[seq[t]!]],
        mask: [new Array(t + 1).fill(1)],
        positions: [[t]],
        past: out.present,
      });
      expect(out.present.keys[0]!.dims[2]).toBe(t + 1);
      expect(
        relClose(out.lastLogits[0]!, fullLogits.subarray(t * V, (t + 1) * V)),
        `position ${t}`,
      ).toBeLessThan(1e-5);
    }
    await s.session.dispose();
  });

  it('batched generation with left padding equals generating each prompt alone', async () => {
    const s = await stepper('last');
    const prompts = [[5, 9, 2], [44, 3, 17, 8, 30, 2, 11], [60]];
    const alone = [];
    for (const prompt of prompts) alone.push((await generate(s, [{ prompt, params: { maxTokens: 8 } }]))[0]!);
    const batched = await generate(
      s,
      prompts.map((prompt) => ({ prompt, params: { maxTokens: 8 } })),
    );
    expect(batched.map((r) => r.tokens)).toEqual(alone.map((r) => r.tokens));
    expect(batched.every((r) => r.finishReason === 'length' && r.tokens.length === 8)).toBe(true);
    await s.session.dispose();
  });

  it('sampling: a seed reproduces, seeds differ, top_k = 1 and a tiny top_p are greedy', async () => {
    const s = await stepper('last');
    const prompt = [4, 8, 15, 16, 23, 42];
    const run = async (params: object, seed = 0) =>
      (await generate(s, [{ prompt, params: { maxTokens: 12, ...params }, seed }]))[0]!.tokens;
    const greedy = await run({});
    const hot = { temperature: 1.5 };
    expect(await run(hot, 7)).toEqual(await run(hot, 7));
    const others = await Promise.all([1, 2, 3, 4].map((seed) => run(hot, seed)));
    expect(new Set(others.map((t) => t.join(','))).size).toBeGreaterThan(1);
    expect(await run({ temperature: 1.5, topK: 1 }, 3)).toEqual(greedy);
    expect(await run({ temperature: 1.5, topP: 1e-9 }, 3)).toEqual(greedy);
    await s.session.dispose();
  });

  it('decodes each generated token once: the ids read grow linearly, and text and stream equal the full decode', async () => {
    const s = await stepper('last');
    let read = 0;
    const counting = (ids: number[]) => {
      read += ids.length;
      return detokenize(ids);
    };
    const streamed: string[] = [];
    const [r] = await generate(s, [{ prompt: [2, 7, 1, 8], params: { maxTokens: 64 } }], {
      detokenize: counting,
      onToken: (_, __, delta) => streamed.push(delta),
    });
    expect(r!.tokens.length).toBe(64);
    // Decoding the whole sequence again per token reads n(n+1)/2 ids (2,080 for 64).
    expect(read).toBeLessThan(8 * r!.tokens.length);
    expect(r!.text).toBe(detokenize(r!.tokens));
    expect(streamed.join('')).toBe(r!.text);
    await s.session.dispose();
  });

  it('stop sequences end the text before them and never stream any part of them; eos ends with eos', async () => {
    const s = await stepper('last');
    const prompt = [2, 7, 1, 8];
    const greedy = (await generate(s, [{ prompt, params: { maxTokens: 10 } }], { detokenize }))[0]!;
    const stop = greedy.text!.slice(4, 6);
    const streamed: string[] = [];
    const [r] = await generate(s, [{ prompt, params: { maxTokens: 10, stop: [stop] } }], {
      detokenize,
      onToken: (_, __, delta) => streamed.push(delta),
    });
    const cut = greedy.text!.indexOf(stop);
    expect(r!.finishReason).toBe('stop');
    expect(r!.text).toBe(greedy.text!.slice(0, cut));
    expect(streamed.join('')).toBe(r!.text);

    const eos = greedy.tokens[2]!;
    const [e] = await generate(s, [{ prompt, params: { maxTokens: 10, stopTokenIds: [eos] } }]);
    expect(e!.finishReason).toBe('eos');
    expect(e!.tokens).toEqual(greedy.tokens.slice(0, greedy.tokens.indexOf(eos)));
    await s.session.dispose();
  });
});

describe('StopWatcher', () => {
  it('holds back a possible stop prefix and releases it when it does not complete', () => {
    const w = new StopWatcher(['END']);
    expect(w.push('abcE')).toBe('abc');
    expect(w.push('abcEN')).toBe('');
    expect(w.push('abcENx')).toBe('ENx');
    expect(w.push('abcENxEND tail')).toBe('');
    expect(w.stopped).toBe(true);
    expect(w.emittedLength).toBe('abcENx'.length);
  });

  it('holds back an incomplete multi-byte character', () => {
    const w = new StopWatcher([]);
    expect(w.push('caf\uFFFD')).toBe('caf');
    expect(w.push('café')).toBe('é');
    expect(w.flush('café!')).toBe('!');
  });
});
