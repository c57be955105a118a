import { describe, expect, it } from 'vitest';
import { ApiError, apiError, describeIssues, HealthStatus } from '../../schemas/index.ts';

describe('shared schemas', () => {
  it('accepts a valid health status and rejects an unknown service', () => {
    expect(HealthStatus.safeParse({ service: 'edge', status: 'ok', version: '1', uptime_s: 0 }).success).toBe(
      true,
    );
    const bad = HealthStatus.safeParse({ service: 'db', status: 'ok', version: '1', uptime_s: -1 });
    expect(bad.success).toBe(false);
    if (!bad.success) {
      const text = describeIssues(bad.error);
      expect(text).toContain('service');
      expect(text).toContain('uptime_s');
    }
  });

  it('builds errors in the OpenAI shape', () => {
    expect(ApiError.parse(apiError('bad', 'invalid_request_error', 'x', 'model'))).toEqual({
      error: { message: 'bad', type: 'invalid_request_error', code: 'x', param: 'model' },
    });
  });
});
