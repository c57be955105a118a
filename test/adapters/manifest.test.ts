import { AdapterManifest, describeIssues, SideNetConfig } from '@ladder/schemas';
import { describe, expect, it } from 'vitest';
import { backboneFingerprint, canonicalJson } from '../../adapters/index.ts';

const manifest = {
  format: 'ladder.adapter',
  format_version: 1,
  adapter_id: 'sent',
  tenant: 'acme',
  name: 'Sentiment',
  version: 1,
  created_at: '2026-01-01T00:00:00.000Z',
  backbone: { name: 'qwen', fingerprint: 'c'.repeat(64) },
  side_net: { taps: [0, 4, 8], side_heads: 2 },
  tensors: [{ name: 'w', dtype: 'F32', shape: [2, 2] }],
  weights: { format: 'safetensors', sha256: 'd'.repeat(64), size_bytes: 100 },
  training: { job_id: 'job1', steps: 10, tokens: 1000, final_losses: { train: 0.5 } },
};

describe('adapter manifest and side-net config schemas', () => {
  it('fills side-net defaults and keeps the parsed form', () => {
    const m = AdapterManifest.parse(manifest);
    expect(m.side_net).toEqual({
      reduction_factor: 8,
      taps: [0, 4, 8],
      free: 0,
      gate: 'vector',
      init: 'random',
      side_heads: 2,
      dropout: 0,
    });
    expect(AdapterManifest.parse(JSON.parse(JSON.stringify(m)))).toEqual(m);
  });

  it('names every bad field at once', () => {
    const bad = AdapterManifest.safeParse({
      ...manifest,
      format_version: 2,
      adapter_id: '../x',
      weights: { format: 'safetensors', sha256: 'XYZ', size_bytes: 0 },
      tensors: [manifest.tensors[0], manifest.tensors[0]],
      extra: true,
    });
    expect(bad.success).toBe(false);
    const text = describeIssues(bad.error!);
    for (const field of [
      'format_version',
      'adapter_id',
      'weights.sha256',
      'weights.size_bytes',
      'tensors',
      'extra',
    ]) {
      expect(text).toContain(field);
    }
  });

  it('refuses side-net configs that cannot be built', () => {
    const cases = [
      [{ taps: [4, 2], side_heads: 2 }, 'taps'],
      [{ taps: [], side_heads: 2 }, 'taps'],
      [{ taps: [0], side_heads: 0 }, 'side_heads'],
      [{ taps: [0], side_heads: 2, gate: 'matrix' }, 'gate'],
      [{ taps: [0], side_heads: 2, dropout: 1 }, 'dropout'],
      [{ taps: [0], side_heads: 2, reduction_factor: 0 }, 'reduction_factor'],
      [{ taps: [0], side_heads: 2, lr: 1 }, 'lr'],
    ] as const;
    for (const [config, field] of cases) {
      const r = SideNetConfig.safeParse(config);
      expect(r.success, JSON.stringify(config)).toBe(false);
      expect(describeIssues(r.error!)).toContain(field);
    }
  });
});

describe('backbone fingerprint', () => {
  it('depends on every config field and weight byte, not on key order or chunking', async () => {
    const w = new Uint8Array([1, 2, 3, 4]);
    const base = await backboneFingerprint({ a: 1, b: { c: 2, d: [1, 2] } }, [w]);
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    expect(
      await backboneFingerprint({ b: { d: [1, 2], c: 2 }, a: 1 }, [w.subarray(0, 1), w.subarray(1)]),
    ).toBe(base);
    expect(await backboneFingerprint({ a: 1, b: { c: 3, d: [1, 2] } }, [w])).not.toBe(base);
    expect(
      await backboneFingerprint({ a: 1, b: { c: 2, d: [1, 2] } }, [new Uint8Array([1, 2, 3, 5])]),
    ).not.toBe(base);
    expect(canonicalJson({ z: 1, a: [{ y: 1, x: 2 }] })).toBe('{"a":[{"x":2,"y":1}],"z":1}');
  });
});
