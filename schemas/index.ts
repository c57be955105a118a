export { ApiError, apiError, describeIssues } from './src/errors.ts';
export { HealthStatus } from './src/health.ts';
export const LADDER_VERSION = '0.1.0';
