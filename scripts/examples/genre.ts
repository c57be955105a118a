// The README's walkthrough on real text: fine-tune the default backbone (ladder-base) on Brown
// passages of five genres through the official openai client, with every hyperparameter 'auto',
// then ask the adapter for the genre of passages it never saw (from other Brown files, held out
// of pretraining too) and count how many it gets right.
//
//   npm start                       # in another terminal
//   npm run pretrain -- tasks       # writes .data/tasks/{spam,genre,gloss}.{train,test}.jsonl
//   npx tsx scripts/examples/genre.ts
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';

const root = join(import.meta.dirname, '..', '..');
const dev = JSON.parse(readFileSync(join(root, '.data', 'dev-tenant.json'), 'utf8')) as {
  api_key: string;
  base_url?: string;
};
const client = new OpenAI({ baseURL: dev.base_url ?? 'http://127.0.0.1:8787/v1', apiKey: dev.api_key });
const tasks = join(root, '.data', 'tasks');
const test = readFileSync(join(tasks, 'genre.test.jsonl'), 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as { text: string; label: string });

const file = await client.files.create({
  file: await toFile(readFileSync(join(tasks, 'genre.train.jsonl')), 'genre.train.jsonl'),
  purpose: 'fine-tune',
});
let job = await client.fineTuning.jobs.create({
  model: 'ladder-base',
  training_file: file.id,
  method: { type: 'supervised' },
  suffix: 'genre',
});
const started = Date.now();
while (!['succeeded', 'failed', 'cancelled'].includes(job.status)) {
  await new Promise((r) => setTimeout(r, 2000));
  job = await client.fineTuning.jobs.retrieve(job.id);
}
if (job.status !== 'succeeded') throw new Error(`job ${job.id} ${job.status}: ${JSON.stringify(job.error)}`);
console.log(`trained in ${Math.round((Date.now() - started) / 1000)} s with`, job.hyperparameters);

// A classification file trains completions " <label>" after "Text: <text>\nLabel:".
let right = 0;
for (const [i, line] of test.entries()) {
  const reply = await client.completions.create({
    model: job.fine_tuned_model ?? '',
    prompt: `Text: ${line.text}\nLabel:`,
    max_tokens: 3,
    temperature: 0,
  });
  const said = reply.choices[0]?.text.trim() ?? '';
  if (said === line.label) right++;
  if (i < 3) console.log(`${line.label.padEnd(10)} <- ${JSON.stringify(said)}  ${line.text.slice(0, 60)}...`);
}
const labels = new Set(test.map((l) => l.label));
console.log(
  `held-out passages: ${right} of ${test.length} right (${((100 * right) / test.length).toFixed(1)}%; chance ${(100 / labels.size).toFixed(0)}%)`,
);
