import { timingSafeEqual } from 'node:crypto';
import Bull from 'bull';
import { createBullBoard } from '@bull-board/api';
import { BullAdapter } from '@bull-board/api/bullAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { findVendor } from '../../../db/repos/vendors.js';
import { WEBHOOK_QUEUE } from '../../../jobs/webhooks.js';
import { bullConnections } from '../../../platform/redis.js';

/**
 * Bull Board at /admin/queues, for operators. Opened by the ADMIN_BOARD_TOKEN
 * or an admin-role JWT, sent as `Authorization: Bearer …` or once as
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
      if (!(await allowed(fromQuery))) return reply.code(401).type('text/plain').send('not an admin token');
      const secure = request.protocol === 'https' ? '; Secure' : '';
      void reply.header('set-cookie', `${COOKIE}=${encodeURIComponent(fromQuery)}; Path=${BOARD_PATH}; HttpOnly; SameSite=Strict${secure}`);
      return reply.redirect(`${BOARD_PATH}/`, 303);
    }
    const given = bearer(request) ?? cookie(request);
    if (!given || !(await allowed(given))) {
      return reply.code(401).type('text/plain').send(`open ${BOARD_PATH}?token=<ADMIN_BOARD_TOKEN or an admin token>`);
    }
  });

  async function allowed(token: string): Promise<boolean> {
    if (opts.boardToken && sameSecret(token, opts.boardToken)) return true;
    let claims: { sub?: unknown };
    try {
      claims = app.jwt.verify<{ sub?: unknown }>(token);
    } catch {
      return false;
    }
    // As for the API's admin routes: the vendor must still exist and be an admin now, not only when the token was signed.
    if (typeof claims.sub !== 'string') return false;
    const vendor = await findVendor(app.db, claims.sub).catch(() => undefined);
    return vendor?.role === 'admin';
  }

  await app.register(serverAdapter.registerPlugin(), { prefix: BOARD_PATH });
};

export default routes;

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
