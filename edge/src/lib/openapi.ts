import type { Hook } from '@hono/zod-openapi';
import { OpenAPIHono, z } from '@hono/zod-openapi';
import { ApiError, describeIssues, issueParam } from '@ladder/schemas';
import { invalidRequest } from './errors.ts';
import type { AppEnv } from './types.ts';

/** Validation failures of any route's params, query or body become one OpenAI-shaped 400. */
// biome-ignore lint/suspicious/noExplicitAny: the hook is shared by routes of every shape
const defaultHook: Hook<any, AppEnv, any, any> = (result) => {
  if (!result.success) {
    const first = result.error.issues[0];
    throw invalidRequest(describeIssues(result.error), first ? issueParam(first) : null);
  }
};

export const router = () => new OpenAPIHono<AppEnv>({ defaultHook });

export const errorResponses = {
  400: { description: 'Invalid request', content: { 'application/json': { schema: ApiError } } },
  401: { description: 'Missing or bad credentials', content: { 'application/json': { schema: ApiError } } },
  404: {
    description: 'Not found (or another tenant’s)',
    content: { 'application/json': { schema: ApiError } },
  },
  429: { description: 'Rate limit or quota', content: { 'application/json': { schema: ApiError } } },
} as const;

export const json = <T extends z.ZodType>(schema: T, description = 'OK') => ({
  description,
  content: { 'application/json': { schema } },
});

export const IdParam = (name: string) => z.object({ [name]: z.string().min(1).max(256) });
export const bearer = [{ bearer: [] }];
