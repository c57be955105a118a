import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { f16, f32, i64 } from '../../../gpu-worker/src/runtime/index.ts';
import { TapStage } from '../../../gpu-worker/src/side-net/index.ts';
import { rng } from '../../helpers/gradcheck.ts';

const root = mkdtempSync(join(tmpdir(), 'ladder-tap-stage-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Half bit patterns spread over the whole range (NaNs and infinities among them), and random floats with a NaN and -0. */
function tensors(seed: number) {
  const r = rng(seed);
  const halves = Uint16Array.from({ length: 2 * 3 * 4096 }, (_, i) => (i * 7 + seed) & 0xffff);
  const floats = Float32Array.from({ length: 2 * 3 * 5 }, () => r() * 2 - 1);
  floats[0] = Number.NaN;
  floats[1] = -0;
  return { 'tap.0': f16(halves, [2, 3, 4096]), final_hidden: f32(floats, [2, 3, 5]) };
}

describe('the tap stage', () => {
  it('gives back each staged batch bit for bit, in its own dtype and shape, once', () => {
    const stage = new TapStage(root);
    const a = tensors(1);
    const b = tensors(2);
    stage.put('0:0', a);
    stage.put('0:1', b);
    expect(stage.size).toBe(2);
    expect(() => stage.put('0:1', b)).toThrow(/already staged/);
    for (const [key, want] of [
      ['0:1', b],
      ['0:0', a],
    ] as const) {
      const got = stage.take(key);
      expect(Object.keys(got)).toEqual(Object.keys(want));
      for (const [name, t] of Object.entries(want)) {
        expect(got[name]!.type).toBe(t.type);
        expect(got[name]!.dims).toEqual(t.dims);
        const bits = (x: typeof t) => new Uint8Array((x.data as Uint16Array).buffer);
        expect(bits(got[name]!)).toEqual(bits(t));
      }
      expect(() => stage.take(key)).toThrow(/not staged/);
    }
    expect(stage.size).toBe(0);
    stage.close();
  });

  it('clear gives the disk back; close removes its folder; a truncated file or other dtype is refused', () => {
    const stage = new TapStage(root);
    const [dir] = readdirSync(root).filter((d) => d.startsWith('ladder-taps-'));
    const file = join(root, dir!, 'taps.bin');
    stage.put('0:0', tensors(3));
    expect(statSync(file).size).toBe(2 * 3 * 4096 * 2 + 2 * 3 * 5 * 4);
    stage.clear();
    expect(statSync(file).size).toBe(0);
    expect(stage.has('0:0')).toBe(false);

    stage.put('1:4', tensors(4));
    truncateSync(file, 100);
    expect(() => stage.take('1:4')).toThrow(/tap\.0 of '1:4' is truncated/);
    expect(() => stage.put('1:5', { ids: i64(BigInt64Array.of(1n), [1]) })).toThrow(/ids is int64/);
    expect(stage.has('1:5')).toBe(false);

    stage.close();
    stage.close(); // idempotent
    expect(existsSync(join(root, dir!))).toBe(false);
    expect(() => stage.put('0:0', tensors(5))).toThrow(/closed/);
  });
});
