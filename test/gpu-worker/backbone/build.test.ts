import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildBackbone } from '../../../gpu-worker/src/backbone/build.ts';
import { BackboneStepper } from '../../../gpu-worker/src/backbone/generate/index.ts';
import { createSession } from '../../../gpu-worker/src/runtime/index.ts';
import { referenceForward } from '../../helpers/reference-llm.ts';
import { writeTinyCheckpoint } from '../../helpers/tiny-checkpoint.ts';

const root = mkdtempSync(join(tmpdir(), 'ladder-build-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('building a backbone from a Hugging Face directory', () => {
  it('builds once, then loads the cached build; the built model computes the checkpoint', async () => {
    const ckpt = await writeTinyCheckpoint(join(root, 'qwen2'), {
      architecture: 'qwen2',
      layers: 2,
      shards: 2,
      seed: 4,
    });
    const cacheDir = join(root, 'cache-a');
    const first = await buildBackbone(ckpt.dir, {
      cacheDir,
      graph: { linear: { kind: 'fp32' }, logits: 'last' },
    });
    expect(first.built).toBe(true);
    const second = await buildBackbone(ckpt.dir, {
      cacheDir,
      graph: { linear: { kind: 'fp32' }, logits: 'last' },
    });
    expect(second.built).toBe(false);
    expect(second.dir).toBe(first.dir);
    expect(readdirSync(cacheDir)).toEqual([first.meta.key]);
    // Other options are another cache entry.
    const int4 = await buildBackbone(ckpt.dir, { cacheDir, graph: { logits: 'last' } });
    expect(int4.built).toBe(true);
    expect(int4.meta.layers.length).toBe(2 * 7);
    expect(readdirSync(cacheDir).sort()).toEqual([first.meta.key, int4.meta.key].sort());

    const stepper = new BackboneStepper(await createSession(second.modelPath), second.config);
    const ids = [5, 80, 13, 200, 7];
    const out = await stepper.step({
      ids: [ids],
      mask: [ids.map(() => 1)],
      positions: [ids.map((_, t) => t)],
    });
    const weights = new Map([...ckpt.weights].map(([k, v]) => [k, v.data]));
    const ref = referenceForward(ckpt.config, weights, ids).logits.at(-1)!;
    const scale = Math.max(...Array.from(ref, Math.abs));
    const err = Math.max(...Array.from(out.lastLogits[0]!, (v, i) => Math.abs(v - ref[i]!) / scale));
    expect(err).toBeLessThan(1e-4);
    await stepper.session.dispose();
  });

  it('a truncated weight file fails naming the file, and leaves nothing in the cache', async () => {
    const ckpt = await writeTinyCheckpoint(join(root, 'broken'), { architecture: 'llama', seed: 1 });
    truncateSync(join(ckpt.dir, ckpt.files[0]!), 300);
    const cacheDir = join(root, 'cache-b');
    await expect(buildBackbone(ckpt.dir, { cacheDir, graph: {} })).rejects.toThrow(/model\.safetensors/);
    expect(existsSync(cacheDir) ? readdirSync(cacheDir) : []).toEqual([]);
  });

  it('a missing tensor fails naming it, and leaves nothing in the cache', async () => {
    // A Llama checkpoint relabelled as Qwen2, whose q/k/v projections must carry biases.
    const ckpt = await writeTinyCheckpoint(join(root, 'missing'), { architecture: 'llama', seed: 2 });
    const configPath = join(ckpt.dir, 'config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    writeFileSync(
      configPath,
      JSON.stringify({ ...config, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' }),
    );
    const cacheDir = join(root, 'cache-c');
    await expect(buildBackbone(ckpt.dir, { cacheDir, graph: {} })).rejects.toThrow(
      /model\.layers\.0\.self_attn\.q_proj\.bias/,
    );
    expect(existsSync(cacheDir) ? readdirSync(cacheDir) : []).toEqual([]);
  });
});
