import envSchema from 'env-schema';
import { Type, type Static, type TObject, type TProperties } from '@sinclair/typebox';

/**
 * The one place that reads the environment. Each process composes the
 * sections it needs into one TypeBox object, reads it once at start, and passes
 * the typed result down. A missing or bad variable stops the process with a
 * message that names it.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface LoadOptions {
  /** Extra values layered over the environment (tests pass their own). */
  env?: Record<string, string | number | boolean | undefined>;
  /** Read process.env (default true). Tests turn it off to stay hermetic. */
  processEnv?: boolean;
  /** Read `.env` in the working directory (default: same as processEnv). */
  dotenv?: boolean;
}

export function loadConfig<T extends TObject>(schema: T, options: LoadOptions = {}): Static<T> {
  const processEnv = options.processEnv ?? true;
  const data = Object.fromEntries(
    Object.entries(options.env ?? {})
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, String(v)]),
  );
  try {
    // env-schema mutates the schema it is given (additionalProperties); hand it a copy.
    return envSchema<Static<T>>({
      schema: structuredClone(schema) as object,
      data,
      env: processEnv,
      dotenv: options.dotenv ?? processEnv,
    });
  } catch (error) {
    throw new ConfigError(describeConfigError(error, schema));
  }
}

function describeConfigError(error: unknown, schema: TObject): string {
  const errors = (error as { errors?: { instancePath?: string; params?: Record<string, unknown>; message?: string }[] }).errors;
  if (!Array.isArray(errors) || errors.length === 0) return `Invalid configuration: ${(error as Error).message}`;
  const lines = errors.map((e) => {
    const name = e.params?.['missingProperty'] ? String(e.params['missingProperty']) : (e.instancePath ?? '').replace(/^\//, '');
    const description = (schema.properties as TProperties)[name]?.description;
    const reason = e.params?.['missingProperty'] ? 'is required but not set' : e.message;
    return `  ${name} ${reason}${description ? ` (${description})` : ''}`;
  });
  return `Invalid configuration; fix these environment variables (see .env.example):\n${lines.join('\n')}`;
}

/** Helpers that keep the schema sections short and self-documenting. */
export const env = {
  string: (def: string | undefined, description: string, extra: Record<string, unknown> = {}) =>
    def === undefined ? Type.String({ description, ...extra }) : Type.String({ default: def, description, ...extra }),
  int: (def: number, description: string, extra: { minimum?: number; maximum?: number } = {}) => Type.Integer({ default: def, description, ...extra }),
  bool: (def: boolean, description: string) => Type.Boolean({ default: def, description }),
  enum: <const V extends string[]>(values: [...V], def: V[number], description: string) =>
    Type.Unsafe<V[number]>({ type: 'string', enum: values, default: def, description }),
};

/** The environment a launcher hands to the processes it starts, plus `extra`. */
export function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { ...process.env, ...extra };
}
