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
  },
  { $id: 'ErrorResponse', title: 'Error' },
);
export type ErrorResponse = Static<typeof ErrorResponse>;

export const ErrorRef = Type.Ref(ErrorResponse);

type CommonError = 400 | 401 | 500 | 503;

/** Response schemas for the errors any authenticated route can return, plus `statuses`. */
export function withErrors<T extends Record<number, TSchema>, const S extends number[]>(
  ok: T,
  ...statuses: S
): T & { [K in CommonError | S[number]]: typeof ErrorRef } {
  const errors = Object.fromEntries([400, 401, 500, 503, ...statuses].map((s) => [s, ErrorRef]));
  return { ...errors, ...ok } as T & { [K in CommonError | S[number]]: typeof ErrorRef };
}
