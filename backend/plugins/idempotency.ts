import fp from 'fastify-plugin';
import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { deleteExpiredIdempotencyKeys, findIdempotencyKey, rememberIdempotencyKey } from '../../db/repos/idempotency.js';
import type { NewIdempotencyKey } from '../../db/schema.js';
import { AppError } from '../../jobs/errors.js';
import { badFields } from './errors.js';
import { vendorOf } from './auth.js';

/**
 * `Idempotency-Key` on the routes that opt in with
 * `preHandler: app.idempotency.check` (enqueue and admin POSTs). The first request with a
 * key runs; its response is remembered for IDEMPOTENCY_TTL_MS together with a
 * fingerprint of method, route and body. A later request with the same key
 * and the same body gets that response again (header `Idempotent-Replayed:
 * true`) and does nothing; with another body it is 422 IDEMPOTENCY_MISMATCH.
 *
 * Enqueue routes write the key in the same transaction as their ledger rows
 * (`app.idempotency.entry` + the enqueuer), so a key is remembered exactly
 * when its jobs exist: two concurrent requests with one key create one set of
 * jobs, and the loser replays the winner's response. Other routes get
 * the response remembered after it is sent (best effort). Only 2xx responses
 * are remembered: a refused request may be retried with the same key.
 */
export interface IdempotencyContext {
  key: string;
  fingerprint: string;
  route: string;
  /** the route stored the key itself, in its own transaction */
  recorded: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    idempotency: IdempotencyContext | null;
  }
  interface FastifyInstance {
    idempotency: {
      ttlMs: number;
      /** preHandler of a route that honours Idempotency-Key: replays a stored answer, or notes the key for this request */
      check(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined>;
      /** the row to write with the request's work; null when the request has no key */
      entry(request: FastifyRequest, statusCode: number, body: unknown): NewIdempotencyKey | null;
      /** answers a request whose key another request committed first */
      replay(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply>;
    };
  }
}

export interface IdempotencyOptions {
  ttlMs: number;
}

export const IDEMPOTENCY_HEADER = 'idempotency-key';
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;
const CLEANUP_EVERY_MS = 3_600_000;

/** Raised by the enqueuer when a concurrent request committed the same key first. */
export class IdempotencyConflictError extends Error {
  override name = 'IdempotencyConflictError';
}

export default fp<IdempotencyOptions>(
  async (app, opts) => {
    app.decorateRequest('idempotency', null);

    async function replayStored(request: FastifyRequest, reply: FastifyReply, context: IdempotencyContext): Promise<FastifyReply | null> {
      const stored = await findIdempotencyKey(app.db, vendorOf(request).id, context.key, opts.ttlMs);
      if (!stored) return null;
      if (stored.fingerprint !== context.fingerprint) {
        throw new AppError(
          'IDEMPOTENCY_MISMATCH',
          `Idempotency-Key ${JSON.stringify(context.key)} was first used with another request (route or body); use a new key for a new request`,
        );
      }
      return reply.code(stored.status_code).header('idempotent-replayed', 'true').send(JSON.parse(stored.response));
    }

    const check = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
      if (!request.caller) return undefined;
      const raw = request.headers[IDEMPOTENCY_HEADER];
      if (raw === undefined) return undefined;
      const key = Array.isArray(raw) ? raw[0] : raw;
      if (key === undefined || !KEY_PATTERN.test(key) || Array.isArray(raw)) {
        throw badFields([{ path: `headers/${IDEMPOTENCY_HEADER}`, message: 'must be one value of 1-255 visible ASCII characters' }]);
      }
      const route = `${request.method} ${request.routeOptions.url ?? request.url}`;
      const context: IdempotencyContext = { key, fingerprint: fingerprint(route, request.body), route, recorded: false };
      const replayed = await replayStored(request, reply, context);
      if (replayed) return replayed;
      request.idempotency = context;
      return undefined;
    };
    app.decorate('idempotency', {
      ttlMs: opts.ttlMs,
      check,
      entry(request: FastifyRequest, statusCode: number, body: unknown): NewIdempotencyKey | null {
        const context = request.idempotency;
        if (!context) return null;
        context.recorded = true;
        return {
          vendor_id: vendorOf(request).id,
          idem_key: context.key,
          fingerprint: context.fingerprint,
          route: context.route,
          status_code: statusCode,
          response: JSON.stringify(body),
        };
      },
      async replay(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
        const context = request.idempotency;
        const replayed = context ? await replayStored(request, reply, context) : null;
        if (!replayed) throw new AppError('CONFLICT', 'a request with this Idempotency-Key is being processed; retry shortly');
        return replayed;
      },
    });

    app.addHook('onSend', async (request, reply, payload) => {
      const context = request.idempotency;
      if (!context || context.recorded || reply.statusCode < 200 || reply.statusCode >= 300 || typeof payload !== 'string') return payload;
      context.recorded = true;
      await rememberIdempotencyKey(app.db, {
        vendor_id: vendorOf(request).id,
        idem_key: context.key,
        fingerprint: context.fingerprint,
        route: context.route,
        status_code: reply.statusCode,
        response: payload,
      }).catch((error: unknown) => request.log.warn({ err: error }, 'could not remember the Idempotency-Key'));
      return payload;
    });

    const cleanup = setInterval(
      () => {
        deleteExpiredIdempotencyKeys(app.db, opts.ttlMs).catch((error: unknown) => app.log.warn({ err: error }, 'expired Idempotency-Key cleanup failed'));
      },
      Math.min(CLEANUP_EVERY_MS, opts.ttlMs),
    );
    cleanup.unref();
    app.addHook('onClose', async () => clearInterval(cleanup));
  },
  { name: 'idempotency', dependencies: ['mysql', 'auth', 'errors'] },
);

/** sha256 over the route and the body with object keys sorted, so key order does not matter. */
export function fingerprint(route: string, body: unknown): string {
  return createHash('sha256').update(route).update('\n').update(stableJson(body)).digest('hex');
}

function stableJson(value: unknown): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Buffer.isBuffer(value)) return JSON.stringify(createHash('sha256').update(value).digest('hex'));
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
}
