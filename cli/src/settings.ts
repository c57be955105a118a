import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describeIssues } from '@ladder/schemas';
import { z } from 'zod';
import { CliError, UsageError } from './errors.ts';
import type { CliIo } from './io.ts';

export const DEFAULT_BASE_URL = 'http://127.0.0.1:8787';
/** What `npm start` writes for its development tenant, looked for from the working directory up. */
export const DEV_TENANT_FILE = join('.data', 'dev-tenant.json');

const DevTenant = z.object({
  base_url: z.url().optional(),
  api_key: z.string().min(1),
  tenant: z.string().optional(),
  admin_token: z.string().min(1).optional(),
});
type DevTenant = z.infer<typeof DevTenant>;

export interface Settings {
  baseUrl: string;
  apiKey: string | null;
  adminToken: string | null;
  /** Print the API's JSON instead of tables. */
  json: boolean;
}

export interface GlobalFlags {
  baseUrl?: string;
  apiKey?: string;
  adminToken?: string;
  json?: boolean;
}

/**
 * Flags win over environment variables, which win over .data/dev-tenant.json. The development
 * tenant's credentials are only sent to the development edge: with another base URL chosen by
 * flag or variable, the file's key is not used.
 */
export function resolveSettings(flags: GlobalFlags, io: CliIo): Settings {
  const env = (name: string) => (io.env[name] ? io.env[name] : undefined);
  const chosenBase = flags.baseUrl ?? env('LADDER_BASE_URL');
  const dev = readDevTenant(io.cwd);
  const devBase = normalizeBaseUrl(dev?.base_url ?? DEFAULT_BASE_URL);
  const baseUrl = chosenBase ? normalizeBaseUrl(chosenBase) : devBase;
  const devApplies = dev !== null && baseUrl === devBase;
  return {
    baseUrl,
    apiKey: flags.apiKey ?? env('LADDER_API_KEY') ?? (devApplies ? dev.api_key : null),
    adminToken:
      flags.adminToken ?? env('LADDER_ADMIN_TOKEN') ?? (devApplies ? (dev.admin_token ?? null) : null),
    json: flags.json ?? false,
  };
}

function normalizeBaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`base URL '${raw}' is not a URL (e.g. ${DEFAULT_BASE_URL})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError(`base URL '${raw}' must be http:// or https://`);
  // OpenAI clients take the base URL with /v1 (as npm start prints it); routes here add it themselves.
  return url.href.replace(/\/+$/, '').replace(/\/v1$/, '');
}

function readDevTenant(cwd: string): DevTenant | null {
  const path = findUp(cwd, DEV_TENANT_FILE);
  if (!path) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CliError(
      `${path} is not readable JSON (${(err as Error).message}); delete it or rerun npm start`,
    );
  }
  const parsed = DevTenant.safeParse(raw);
  if (!parsed.success) throw new CliError(`${path}: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

function findUp(start: string, relative: string): string | null {
  for (let dir = resolve(start); ; dir = dirname(dir)) {
    const candidate = join(dir, relative);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return null;
  }
}
