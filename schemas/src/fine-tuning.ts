import { z } from 'zod';
import { describeIssues, issueParam } from './errors.ts';
import { Hyperparameters, type ResolvedTraining, TrainingMethod } from './internal.ts';

/**
 * `POST /v1/fine_tuning/jobs` as OpenAI's API and its `openai` npm client (v6) send it, mapped
 * onto the internal TrainingMethod. Accepted, each value `'auto'` or a number:
 *
 *   method: { type: 'supervised', supervised: { hyperparameters } }   supervised = LST, the default
 *   method: { type: 'lst' | 'xladder', lst | xladder: { hyperparameters } }
 *   method: { type, hyperparameters }                                  Ladder's first shape
 *   hyperparameters: { ... }                                           OpenAI's deprecated top level
 *
 * A hyperparameter may appear in more than one of these places only with the same value. What
 * Ladder does not do is refused with a 400 naming the field, never ignored: `dpo` and
 * `reinforcement`, `integrations`, a sub-object that is not `method.type`'s own.
 */

/** What `method.type` may say; `supervised` is OpenAI's name and trains Ladder's default side net. */
export const METHOD_TYPES = ['supervised', 'lst', 'xladder'] as const;
export const MethodType = z.enum(METHOD_TYPES);
export type MethodType = z.infer<typeof MethodType>;
/** OpenAI's other methods: named so that they are refused as such, not as a typo. */
const UNSUPPORTED_METHOD_TYPES = ['dpo', 'reinforcement'] as const;
const SUB_OBJECTS = [...METHOD_TYPES, ...UNSUPPORTED_METHOD_TYPES] as const;

const MethodOptions = z.strictObject({ hyperparameters: Hyperparameters.optional() });

export const FineTuningMethodRequest = z.strictObject({
  type: z.enum([...METHOD_TYPES, ...UNSUPPORTED_METHOD_TYPES]),
  supervised: MethodOptions.nullish(),
  lst: MethodOptions.nullish(),
  xladder: MethodOptions.nullish(),
  dpo: z.unknown().optional(),
  reinforcement: z.unknown().optional(),
  hyperparameters: Hyperparameters.optional(),
});

export const CreateFineTuningJobRequest = z.strictObject({
  model: z.string().min(1).max(256),
  training_file: z.string().min(1).max(128),
  validation_file: z.string().min(1).max(128).nullish(),
  method: FineTuningMethodRequest.optional(),
  /** Deprecated by OpenAI in favour of `method`; still sent by older code. */
  hyperparameters: Hyperparameters.optional(),
  integrations: z.array(z.unknown()).nullish(),
  suffix: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,40}$/, 'must be 1-40 of [A-Za-z0-9_-]')
    .nullish(),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .nullish(),
  metadata: z.record(z.string().max(64), z.string().max(512)).nullish(),
});
export type CreateFineTuningJobRequest = z.input<typeof CreateFineTuningJobRequest>;

/** A job request with its method resolved: what the edge stores and dispatches. */
export interface FineTuningJobSpec {
  model: string;
  training_file: string;
  validation_file: string | null;
  suffix: string | null;
  seed: number | null;
  metadata: Record<string, string> | null;
  /** As the request named it, for echoing the job's method back in the same words. */
  method_type: MethodType;
  method: TrainingMethod;
}

/** Why a request was refused: OpenAI's error fields. */
export interface FineTuningRequestRefusal {
  message: string;
  param: string | null;
  code: string;
}

export type FineTuningRequestResult =
  | { ok: true; spec: FineTuningJobSpec }
  | { ok: false; refusal: FineTuningRequestRefusal };

const refuse = (
  param: string | null,
  message: string,
  code = 'invalid_request',
): FineTuningRequestResult => ({
  ok: false,
  refusal: { message, param, code },
});

/** Reads a create-job body in any accepted shape; the first problem, with the field it is in. */
export function parseFineTuningJobRequest(body: unknown): FineTuningRequestResult {
  const parsed = CreateFineTuningJobRequest.safeParse(body);
  if (!parsed.success) {
    const param = issueParam(parsed.error.issues[0]!);
    return refuse(param, describeIssues(parsed.error));
  }
  // The raw body, not the parsed one: parsing fills defaults, and only what the request
  // itself says can conflict with another place.
  const raw = body as CreateFineTuningJobRequest;
  if (raw.integrations?.length) {
    return refuse(
      'integrations',
      'integrations are not supported (Ladder reports to no third-party service): follow the job through its events, checkpoints and result file.',
      'unsupported_parameter',
    );
  }
  const method = raw.method ?? { type: 'supervised' as const };
  const type = method.type;
  if (type === 'dpo' || type === 'reinforcement') {
    return refuse(
      'method.type',
      `method.type '${type}' is not supported: Ladder trains side-network adapters by supervised fine-tuning ('supervised', the same as 'lst', or 'xladder').`,
      'unsupported_method',
    );
  }
  for (const key of SUB_OBJECTS) {
    if (key !== type && method[key] != null) {
      return refuse(
        `method.${key}`,
        `method.${key} is given but method.type is '${type}': put the options under method.${type}, or set method.type to '${key}'.`,
        'method_mismatch',
      );
    }
  }

  const sources: [string, Record<string, unknown> | undefined][] = [
    ['hyperparameters', raw.hyperparameters],
    ['method.hyperparameters', method.hyperparameters],
    [`method.${type}.hyperparameters`, method[type]?.hyperparameters ?? undefined],
  ];
  const merged: Record<string, unknown> = {};
  const origin: Record<string, string> = {};
  for (const [where, values] of sources) {
    for (const [name, value] of Object.entries(values ?? {})) {
      if (value === undefined) continue;
      if (name in merged && JSON.stringify(merged[name]) !== JSON.stringify(value)) {
        return refuse(
          `${where}.${name}`,
          `${where}.${name} is ${JSON.stringify(value)} but ${origin[name]}.${name} is ${JSON.stringify(merged[name])}: give each hyperparameter once, or the same value in both places.`,
          'conflicting_hyperparameters',
        );
      }
      merged[name] = value;
      origin[name] ??= where;
    }
  }
  const resolved = TrainingMethod.safeParse({
    type: type === 'supervised' ? 'lst' : type,
    hyperparameters: merged,
  });
  if (!resolved.success) {
    // Every source passed on its own, so this is a rule between fields of the merged set.
    const issue = resolved.error.issues[0]!;
    const [, name] = issue.path;
    const param = typeof name === 'string' ? `${origin[name]}.${name}` : 'method';
    return refuse(param, `${param}: ${issue.message}`);
  }
  const p = parsed.data;
  return {
    ok: true,
    spec: {
      model: p.model,
      training_file: p.training_file,
      validation_file: p.validation_file ?? null,
      suffix: p.suffix ?? null,
      seed: p.seed ?? null,
      metadata: p.metadata ?? null,
      method_type: type,
      method: resolved.data,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The job's hyperparameters and method as OpenAI's job object shows them

const autoOr = <T extends z.ZodType>(value: T) => z.union([z.literal('auto'), value]);

/** OpenAI's three, `'auto'` until the worker has resolved them when the job started. */
export const JobHyperparameters = z.object({
  n_epochs: autoOr(z.number().int()),
  batch_size: autoOr(z.number().int()),
  learning_rate_multiplier: autoOr(z.number()),
});
export type JobHyperparameters = z.infer<typeof JobHyperparameters>;

const MethodHyperparameters = z.record(z.string(), z.union([z.number(), z.string()]));
const EchoedOptions = z.object({ hyperparameters: MethodHyperparameters });

/** `{ type, <type>: { hyperparameters } }`, in the words the request used. */
export const FineTuningMethod = z.object({
  type: MethodType,
  supervised: EchoedOptions.optional(),
  lst: EchoedOptions.optional(),
  xladder: EchoedOptions.optional(),
});
export type FineTuningMethod = z.infer<typeof FineTuningMethod>;

/** The job's hyperparameters: every knob it trains with, resolved values once known. */
export function methodHyperparameters(
  method: TrainingMethod,
  resolved: ResolvedTraining | null,
): Record<string, number | string> {
  const all: Record<string, number | string> = {};
  for (const [name, value] of Object.entries(method.hyperparameters))
    if (typeof value === 'number' || typeof value === 'string') all[name] = value;
  return resolved ? { ...all, ...resolved } : all;
}

export function jobHyperparameters(
  method: TrainingMethod,
  resolved: ResolvedTraining | null,
): JobHyperparameters {
  const hp = methodHyperparameters(method, resolved);
  return JobHyperparameters.parse({
    n_epochs: hp.n_epochs ?? 'auto',
    batch_size: hp.batch_size ?? 'auto',
    learning_rate_multiplier: hp.learning_rate_multiplier ?? 'auto',
  });
}

export function echoMethod(
  type: MethodType,
  method: TrainingMethod,
  resolved: ResolvedTraining | null,
): FineTuningMethod {
  return { type, [type]: { hyperparameters: methodHyperparameters(method, resolved) } };
}
