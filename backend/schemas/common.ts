import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { ERROR_CODES } from '../../jobs/errors.js';

/** The one error body every route returns, whatever went wrong. */
export const ErrorResponse = Type.Object(
  {
    statusCode: Type.Integer(),
    code: Type.Unsafe<string>({ type: 'string', enum: Object.keys(ERROR_CODES) }),
    error: Type.String({ description: 'HTTP reason phrase' }),
    message: Type.String(),
    fields: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }), { description: 'for 400s: each invalid field' })),
    requestId: Type.Optional(Type.String({ description: 'the X-Request-Id of the request, as the logs name it' })),
  },
  { $id: 'ErrorResponse', title: 'Error' },
);
export type ErrorResponse = Static<typeof ErrorResponse>;

export const ErrorRef = Type.Ref(ErrorResponse);

/**
 * A vendor's own id (projectId, recordId): any text but `..`, a slash or
 * backslash, or a control/line-separator character, so an id can never name
 * a path or forge a log line, and a bad one is a 400 at enqueue rather than a
 * job that fails after its work.
 */
export const VENDOR_ID_PATTERN = String.raw`^(?!.*\.\.)[^/\\\u0000-\u001F\u007F-\u009F\u2028\u2029]+$`;
export const VENDOR_ID_RULE = 'must not contain "..", "/", "\\" or control characters';

/** A projectId/recordId field: 1-191 characters of VENDOR_ID_PATTERN. */
export function vendorIdString(description: string) {
  return Type.String({ minLength: 1, maxLength: 191, pattern: VENDOR_ID_PATTERN, description: `${description}; ${VENDOR_ID_RULE}` });
}

type CommonError = 400 | 401 | 403 | 500 | 503;

/** Response schemas for the errors any authenticated route can return (403: a scoped token without the route's scope), plus `statuses`. */
export function withErrors<T extends Record<number, TSchema>, const S extends number[]>(
  ok: T,
  ...statuses: S
): T & { [K in CommonError | S[number]]: typeof ErrorRef } {
  const errors = Object.fromEntries([400, 401, 403, 500, 503, ...statuses].map((s) => [s, ErrorRef]));
  return { ...errors, ...ok } as T & { [K in CommonError | S[number]]: typeof ErrorRef };
}
