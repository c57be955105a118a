import { describe, expect, it } from 'vitest';
import {
  adapterKey,
  checkpointPrefix,
  datasetKey,
  manifestKey,
  tenantPrefix,
  weightsKey,
} from '../../adapters/index.ts';

describe('adapter keys stay inside the tenant prefix', () => {
  it('builds the documented layout', () => {
    expect(adapterKey('acme', 'sentiment-v2', 3)).toBe('tenants/acme/adapters/sentiment-v2/v3/');
    expect(manifestKey('acme', 'a', 1)).toBe('tenants/acme/adapters/a/v1/manifest.json');
    expect(weightsKey('acme', 'a', 1, 'e'.repeat(64))).toBe(
      `tenants/acme/adapters/a/v1/weights/${'e'.repeat(64)}.safetensors`,
    );
    expect(checkpointPrefix('acme', 'job_1')).toBe('tenants/acme/checkpoints/job_1/');
    expect(datasetKey('acme', 'train.v2.jsonl')).toBe('tenants/acme/datasets/train.v2.jsonl');
  });

  it.each([
    '../other',
    'a/b',
    '',
    '.hidden',
    'x'.repeat(129),
    '\uff41cme', // fullwidth a
    'acme\u200b', // zero-width space
    'ac\u0301me', // combining accent
    'acme\n',
  ])('refuses id %j, naming the field', (id) => {
    expect(() => adapterKey('acme', id, 1)).toThrow(/adapter id/);
    expect(() => tenantPrefix(id)).toThrow(/tenant/);
  });

  it('refuses a non-positive version and a bad sha', () => {
    expect(() => adapterKey('acme', 'a', 0)).toThrow(/adapter version/);
    expect(() => weightsKey('acme', 'a', 1, '../x')).toThrow(/sha256/);
  });

  it.each(['..', 'a..b', '../x', '.x', 'a/b'])('refuses dataset name %j', (name) => {
    expect(() => datasetKey('acme', name)).toThrow(/dataset name/);
  });
});
