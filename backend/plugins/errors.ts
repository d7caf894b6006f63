import fp from 'fastify-plugin';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { STATUS_CODES } from 'node:http';
import { AppError, ERROR_CODES, type ErrorCode, type FieldProblem } from '../../jobs/errors.js';
import { isTransientDbError } from '../../db/errors.js';
import { OPERATION_NAMES } from '../../jobs/operations.js';
import { ErrorResponse, VENDOR_ID_PATTERN, VENDOR_ID_RULE } from '../schemas/common.js';

/** Why a preflight reached the not-found handler: its origin is allowed nowhere (null: not a preflight). */
function refusedPreflight(request: FastifyRequest): string | null {
  const origin = request.headers.origin;
  if (request.method !== 'OPTIONS' || typeof origin !== 'string' || request.headers['access-control-request-method'] === undefined) return null;
  return `origin ${origin} is not allowed to call this API from a browser: no vendor's corsOrigins (nor CORS_ORIGINS) names it`;
}

/**
 * The API's one error handler. Every error leaves as
 * `{ statusCode, code, error, message }`; a 5xx never carries internals,
 * which go to the log with the request id instead.
 */
export default fp(
  async (app) => {
    app.addSchema(ErrorResponse);
    app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      const body = toErrorBody(error);
      if (body.statusCode >= 500) request.log.error({ err: error, code: body.code }, 'request failed');
      else request.log.info({ code: body.code, statusCode: body.statusCode, msg: body.message }, 'request refused');
      if (body.statusCode === 503) void reply.header('retry-after', '5');
      return reply.code(body.statusCode).send({ ...body, requestId: request.id });
    });
    app.setNotFoundHandler((request, reply) => {
      // @fastify/cors hands a preflight from an origin nobody allows on to here (its OPTIONS * route).
      const refused = refusedPreflight(request);
      if (refused) return reply.code(403).send({ ...errorBody('FORBIDDEN', refused), requestId: request.id });
      return reply.code(404).send({ ...errorBody('NOT_FOUND', `route ${request.method} ${request.url.split('?')[0]} does not exist`), requestId: request.id });
    });
    // Every answer names its request (the caller's X-Request-Id when it sent a usable one), as the logs do.
    app.addHook('onRequest', async (request, reply) => {
      void reply.header('x-request-id', request.id);
    });
  },
  { name: 'errors' },
);

export function errorBody(code: ErrorCode, message: string, statusCode: number = ERROR_CODES[code].status): ErrorResponse {
  return { statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message };
}

/** A 400 for fields that passed the schema but break a rule checked in code. */
export function badFields(fields: FieldProblem[]): AppError {
  return new AppError('BAD_REQUEST', fields.map((f) => `${f.path} ${f.message}`).join('; '), { details: { fields } });
}

export function toErrorBody(error: FastifyError): ErrorResponse {
  if (error instanceof AppError) {
    const status = error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    const body = errorBody(error.code, status >= 500 && error.code === 'INTERNAL' ? 'internal error' : error.message, status);
    const fields = error.details?.['fields'];
    return Array.isArray(fields) ? { ...body, fields: fields as FieldProblem[] } : body;
  }
  if (error.validation) {
    const fields = error.validation.map((v) => ({
      path: fieldPath(error.validationContext, v.instancePath, v.params),
      message: validationMessage(v),
    }));
    const message = fields.map((f) => `${f.path} ${f.message}`).join('; ');
    return { ...errorBody('BAD_REQUEST', message), fields };
  }
  const code = error.code ?? '';
  if (code.startsWith('FST_JWT_') || code === 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED') {
    return errorBody('UNAUTHORIZED', /expired/i.test(error.message) ? 'token expired' : 'missing or invalid bearer token');
  }
  if (
    code === 'FST_ERR_CTP_BODY_TOO_LARGE' ||
    code === 'FST_REQ_FILE_TOO_LARGE' ||
    code === 'FST_FILES_LIMIT' ||
    code === 'FST_PARTS_LIMIT' ||
    code === 'FST_FIELDS_LIMIT'
  ) {
    return errorBody('PAYLOAD_TOO_LARGE', error.message);
  }
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || code === 'FST_INVALID_MULTIPART_CONTENT_TYPE') return errorBody('UNSUPPORTED_MEDIA_TYPE', error.message);
  if (isTransientDbError(error) || isRedisDown(error))
    return errorBody('SERVICE_UNAVAILABLE', 'a backing service (MySQL or Redis) is unavailable; retry shortly');
  const status = error.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    const mapped: ErrorCode =
      status === 401
        ? 'UNAUTHORIZED'
        : status === 403
          ? 'FORBIDDEN'
          : status === 404
            ? 'NOT_FOUND'
            : status === 413
              ? 'PAYLOAD_TOO_LARGE'
              : status === 415
                ? 'UNSUPPORTED_MEDIA_TYPE'
                : status === 429
                  ? 'RATE_LIMITED'
                  : 'BAD_REQUEST';
    return errorBody(mapped, error.message, status);
  }
  return errorBody('INTERNAL', 'internal error', 500);
}

function validationMessage(v: { keyword: string; message?: string | undefined; params: Record<string, unknown> }): string {
  if (typeof v.params['additionalProperty'] === 'string') return 'is not an allowed field';
  // A tagged union (operations: `op`) names the tag, not Ajv's "value of tag must be in oneOf".
  if (v.keyword === 'discriminator') {
    const tag = String(v.params['tag']);
    if (v.params['error'] === 'tag') return `needs a string "${tag}"`;
    const known = tag === 'op' ? ` (one of: ${OPERATION_NAMES.join(', ')})` : '';
    return `has unknown ${tag} ${JSON.stringify(v.params['tagValue'])}${known}`;
  }
  if (v.keyword === 'pattern' && v.params['pattern'] === VENDOR_ID_PATTERN) return VENDOR_ID_RULE;
  return v.message ?? 'is invalid';
}

function fieldPath(context: string | undefined, instancePath: string, params: Record<string, unknown>): string {
  const base = `${context ?? 'body'}${instancePath}`;
  if (typeof params['missingProperty'] === 'string') return `${base}/${params['missingProperty']}`;
  if (typeof params['additionalProperty'] === 'string') return `${base}/${params['additionalProperty']}`;
  return base;
}

function isRedisDown(error: unknown): boolean {
  const message = (error as Error)?.message ?? '';
  return /Stream isn't writeable|enableOfflineQueue|Connection is closed|Reached the max retries per request|ECONNREFUSED|Command timed out/i.test(message);
}
