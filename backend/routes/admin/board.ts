import { timingSafeEqual } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import Bull from 'bull';
import { createBullBoard } from '@bull-board/api';
import { BullAdapter } from '@bull-board/api/bullAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { WEBHOOK_QUEUE } from '../../../jobs/webhooks.js';
import { bullConnections } from '../../../platform/redis.js';

/**
 * Bull Board at /admin/queues, for operators. Opened by the ADMIN_BOARD_TOKEN
 * or an admin's token (checked by the API's own admin guard), sent as `Authorization: Bearer …` or once as
 * `?token=…` (which sets an HttpOnly cookie for this path and redirects to
 * drop the token from the address bar). The work queues are read-only here:
 * retrying a job is the dead-letter API's business, so the ledger stays the
 * record; webhook deliveries may be retried from the board.
 */
export interface BoardOptions {
  boardToken: string;
  redisUrl: string;
  bullPrefix: string;
}

export const BOARD_PATH = '/admin/queues';
const COOKIE = 'iq_board';

const routes: FastifyPluginAsync<BoardOptions> = async (app, opts) => {
  const connections = bullConnections(opts.redisUrl, 'imagequeue-api-board');
  const webhooks = new Bull(WEBHOOK_QUEUE, { prefix: opts.bullPrefix, createClient: (type) => connections.createClient(type) });
  webhooks.on('error', (error) => app.log.debug({ err: error }, 'board webhooks queue error'));
  app.addHook('onClose', async () => {
    await webhooks.close().catch(() => undefined);
    await connections.close();
  });

  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(BOARD_PATH);
  createBullBoard({
    queues: [
      ...Object.values(app.queues).map(
        (q) => new BullAdapter(q, { readOnlyMode: true, description: 'retry dead jobs with POST /api/admin/dead-letters/:jobId/retry' }),
      ),
      new BullAdapter(webhooks, { description: 'webhook deliveries (retried for about a day)' }),
    ],
    // @bull-board/fastify pins its own copy of @bull-board/api (a patch version apart): the same shape, separately declared.
    serverAdapter: serverAdapter as unknown as Parameters<typeof createBullBoard>[0]['serverAdapter'],
    options: { uiConfig: { boardTitle: 'imagequeue' } },
  });

  app.addHook('onRequest', async (request, reply) => {
    const fromQuery = (request.query as { token?: unknown } | undefined)?.token;
    if (typeof fromQuery === 'string' && fromQuery !== '') {
      const refusal = await refused(request, reply, fromQuery);
      if (refusal) return reply.code(refusal.statusCode).send(refusal);
      const secure = request.protocol === 'https' ? '; Secure' : '';
      void reply.header('set-cookie', `${COOKIE}=${encodeURIComponent(fromQuery)}; Path=${BOARD_PATH}; HttpOnly; SameSite=Strict${secure}`);
      return reply.redirect(`${BOARD_PATH}/`, 303);
    }
    const given = bearer(request) ?? cookie(request);
    const refusal = given
      ? await refused(request, reply, given)
      : errorBody(401, 'UNAUTHORIZED', `open ${BOARD_PATH}?token=<ADMIN_BOARD_TOKEN or an admin token>, or send it as a bearer token`);
    if (refusal) return reply.code(refusal.statusCode).send(refusal);
  });

  /**
   * Null when the token opens the board: the board token, or a token that
   * passes the API's own admin guard (signature, expiry, the vendor still
   * there and an admin). Otherwise the error to answer with.
   */
  async function refused(request: FastifyRequest, reply: FastifyReply, token: string): Promise<ErrorBody | null> {
    if (opts.boardToken && sameSecret(token, opts.boardToken)) return null;
    request.headers.authorization = `Bearer ${token}`;
    try {
      await app.requireAdmin(request, reply);
      return null;
    } catch (error) {
      const e = error as { statusCode?: number; code?: string; message?: string };
      const status = e.statusCode === 403 ? 403 : 401;
      return errorBody(status, status === 403 ? 'FORBIDDEN' : 'UNAUTHORIZED', e.message ?? 'not an admin token');
    }
  }

  // The board's own API answers errors as { error: { key } }: they get the
  // API's error fields too (statusCode, code, message), the board's kept.
  app.addHook('onSend', async (_request, reply, payload) => {
    if (reply.statusCode < 400 || typeof payload !== 'string') return payload;
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(payload) as Record<string, unknown>;
    } catch {
      return payload;
    }
    if (typeof body.code === 'string' && typeof body.message === 'string') return payload;
    const key = (body.error as { key?: unknown } | undefined)?.key;
    return JSON.stringify({
      ...body,
      statusCode: reply.statusCode,
      code: BOARD_CODES[reply.statusCode] ?? (reply.statusCode >= 500 ? 'INTERNAL' : 'BAD_REQUEST'),
      message: typeof key === 'string' ? key : `the board answered ${reply.statusCode}`,
    });
  });

  await app.register(serverAdapter.registerPlugin(), { prefix: BOARD_PATH });
};

export default routes;

const BOARD_CODES: Record<number, string> = { 400: 'BAD_REQUEST', 401: 'UNAUTHORIZED', 403: 'FORBIDDEN', 404: 'NOT_FOUND', 409: 'CONFLICT' };

interface ErrorBody {
  statusCode: number;
  code: string;
  error: string;
  message: string;
}

function errorBody(statusCode: number, code: string, message: string): ErrorBody {
  return { statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message };
}

function bearer(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  return header?.startsWith('Bearer ') ? header.slice(7) : null;
}

function cookie(request: FastifyRequest): string | null {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === COOKIE) return decodeURIComponent(value.join('='));
  }
  return null;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
