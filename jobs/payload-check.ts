import type { TSchema } from '@sinclair/typebox';
import { FormatRegistry, Kind, TypeRegistry } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import { payloadSchema, type AnyJobKind } from './kinds.js';

/**
 * The check a worker runs on a Bull payload when its job starts: the kind's
 * payloadSchema, compiled once. A few option schemas are plain JSON Schema
 * written through Type.Unsafe (string enums, and the operations' `oneOf`
 * with a discriminator, which Fastify's Ajv reads); TypeBox's checker does
 * not know them, so they are checked here by the keywords they use, and a
 * schema using any other keyword is refused when the check is built rather
 * than passed unchecked (so is a string `format` with no check registered).
 */
export interface PayloadCheck {
  /** null when the payload matches, else up to three problems, `path: message` */
  problems(value: unknown): string[] | null;
}

const ANNOTATIONS = new Set(['title', 'description', 'default', 'examples', 'discriminator', '$id', '$comment']);
const UNSAFE_KEYWORDS = new Set(['type', 'enum', 'oneOf']);

function checkUnsafe(schema: Record<string, unknown>, value: unknown): boolean {
  const type = schema['type'];
  if (type === 'string' && typeof value !== 'string') return false;
  if (type === 'object' && (typeof value !== 'object' || value === null || Array.isArray(value))) return false;
  const allowed = schema['enum'];
  if (Array.isArray(allowed) && !allowed.includes(value)) return false;
  const branches = schema['oneOf'];
  if (Array.isArray(branches) && branches.filter((branch) => Value.Check(branch as TSchema, value)).length !== 1) return false;
  return true;
}

// JSON Schema's `uri`: an absolute URI (a scheme, then no whitespace), as Ajv's formats check it for the API.
if (!FormatRegistry.Has('uri')) FormatRegistry.Set('uri', (value) => /^[a-z][a-z0-9+.-]*:\S*$/i.test(value) && URL.canParse(value));
if (!TypeRegistry.Has('Unsafe')) TypeRegistry.Set('Unsafe', (schema, value) => checkUnsafe(schema as Record<string, unknown>, value));

/** Refuses a Type.Unsafe schema with a keyword the check above would ignore. */
function assertCheckable(schema: unknown, path: string): void {
  if (Array.isArray(schema)) return schema.forEach((s, i) => assertCheckable(s, `${path}/${i}`));
  if (typeof schema !== 'object' || schema === null) return;
  const record = schema as Record<string | symbol, unknown>;
  if (typeof record['format'] === 'string' && !FormatRegistry.Has(record['format']))
    throw new Error(`payload schema at ${path || '/'}: format "${record['format']}" has no check`);
  if (record[Kind] === 'Unsafe') {
    for (const key of Object.keys(record)) {
      if (!UNSAFE_KEYWORDS.has(key) && !ANNOTATIONS.has(key))
        throw new Error(`payload schema at ${path || '/'}: keyword "${key}" of a Type.Unsafe schema is not checked`);
    }
  }
  for (const [key, child] of Object.entries(record)) assertCheckable(child, `${path}/${key}`);
}

export function payloadCheck(spec: AnyJobKind): PayloadCheck {
  const schema = payloadSchema(spec);
  assertCheckable(schema, '');
  const compiled = TypeCompiler.Compile(schema);
  return {
    problems(value) {
      if (compiled.Check(value)) return null;
      return [...compiled.Errors(value)].slice(0, 3).map((e) => `${e.path || '/'}: ${e.message}`);
    },
  };
}
