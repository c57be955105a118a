import { join } from 'node:path';
import { Backbone } from '../../gpu-worker/src/backbone/index.ts';

/** Prompts for the model README's sample: a Brown-like opening, a dictionary line, a story. */
export const SAMPLE_PROMPTS = [
  'The committee said on Friday that',
  'library (noun):',
  'She opened the door and',
  'In the early years of the century, the town',
];

/** What the model writes for each prompt through the platform's own loader (4-bit), seeded. */
export async function sample(modelDir: string, cacheDir: string, maxTokens = 40) {
  const backbone = await Backbone.open(modelDir, { cacheDir });
  const out: { prompt: string; greedy: string; sampled: string }[] = [];
  for (const prompt of SAMPLE_PROMPTS) {
    const greedy = await backbone.complete(prompt, { maxTokens });
    const sampled = await backbone.complete(prompt, { maxTokens, temperature: 0.8, topP: 0.95 }, { seed: 1 });
    out.push({ prompt, greedy: greedy.text, sampled: sampled.text });
  }
  await backbone.dispose();
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = process.argv[2] ?? join(import.meta.dirname, '..', '..', 'models', 'ladder-base');
  for (const s of await sample(dir, join(process.cwd(), '.data', 'build-cache'))) {
    console.log(`> ${s.prompt}\n  greedy:  ${s.greedy}\n  sampled: ${s.sampled}\n`);
  }
}
