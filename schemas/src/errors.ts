import { z } from 'zod';

/** OpenAI's error shape, used by the public API and by the internal edge<->worker protocol. */
export const ApiError = z.object({
  error: z.object({
    message: z.string(),
    type: z.string(),
    param: z.string().nullable(),
    code: z.string().nullable(),
  }),
});
export type ApiError = z.infer<typeof ApiError>;

export function apiError(
  message: string,
  type: string,
  code: string | null = null,
  param: string | null = null,
): ApiError {
  return { error: { message, type, param, code } };
}

/** One readable line per zod issue: `messages.0.role: Invalid option ...`. */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');
}
