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

/** The error object of a response body in OpenAI's shape; null for anything else (not JSON, another shape). */
export function parseApiError(text: string): ApiError['error'] | null {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return null;
  }
  const parsed = ApiError.safeParse(body);
  return parsed.success ? parsed.data.error : null;
}

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

/**
 * The field an issue is about, as OpenAI's `param` names it (`method.supervised.hyperparameters.n_epochs`);
 * an unknown key is named itself, not its object. null for the body as a whole.
 */
export function issueParam(issue: z.core.$ZodIssue): string | null {
  const path = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]!] : issue.path;
  return path.length ? path.map(String).join('.') : null;
}
