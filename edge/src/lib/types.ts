import type { TenantLimits } from '@ladder/schemas';

/** The authenticated caller of a public route. */
export interface TenantContext {
  id: string;
  name: string;
  limits: TenantLimits;
}

export interface AppEnv {
  Bindings: Env;
  Variables: { tenant: TenantContext };
}
