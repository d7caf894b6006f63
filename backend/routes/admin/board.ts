import { timingSafeEqual } from 'node:crypto';
import { createBullBoard } from '@bull-board/api';
import { BullAdapter } from '@bull-board/api/bullAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { AppError } from '../../../jobs/errors.js';
import { isFullToken, mountAuth, type TokenClaims } from '../../plugins/auth.js';
import { openWebhookQueue } from '../../../platform/queues.js';

/**
 * Bull Board at /admin/queues, for operators. Its routes are `auth: 'admin'`:
 * an admin's bearer token opens them, and so does a board session, a
 * short-lived HttpOnly cookie that POST /admin/queues/session hands out for
 * the ADMIN_BOARD_TOKEN or an admin token (sent as `Authorization: Bearer …`
 * or, from the login form a browser is shown, as a form field). A token never
 * travels in a query string, so it never reaches an access log. The work
 * queues are read-only here: retrying a job is the dead-letter API's
 * business, so the ledger stays the record; webhook deliveries may be
 * retried from the board.
 */
export interface BoardOptions {
  boardToken: string;
  redisUrl: string;
  bullPrefix: string;
  /** how long a board session cookie lasts, in seconds */
  sessionSeconds: number;
}

export const BOARD_PATH = '/admin/queues';
const COOKIE = 'iq_board';

const routes: FastifyPluginAsync<BoardOptions> = async (app, opts) => {
  // As the API's own queues: fail fast while Redis is away, so neither a board request nor app.close() hangs on it.
  const board = openWebhookQueue({
    redisUrl: opts.redisUrl,
    prefix: opts.bullPrefix,
    connectionName: 'imagequeue-api-board',
    clientOptions: { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 2000, connectTimeout: 2000 },
  });
  const webhooks = board.queue;
  webhooks.on('error', (error) => app.log.debug({ err: error }, 'board webhooks queue error'));
  app.addHook('onClose', () => board.close());

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

  /** A board session cookie this API signed and that has not expired. */
  const hasSession = (request: FastifyRequest): boolean => {
    const value = cookie(request);
    if (!value) return false;
    try {
      return app.jwt.verify<TokenClaims>(value).typ === 'board';
    } catch {
      return false;
    }
  };
  const isBoardToken = (token: string | null): boolean => Boolean(opts.boardToken && token && sameSecret(token, opts.boardToken));

  /**
   * Swaps the board token or an admin token for a session cookie. Public to
   * the auth hook because the credential may come in the form body; it is
   * checked here, the same way the admin routes check it.
   */
  app.register(async (login) => {
    login.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_request, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });
    login.post(`${BOARD_PATH}/session`, { schema: { hide: true }, config: { auth: 'public' } }, async (request, reply) => {
      const fromForm = (request.body as { token?: unknown } | undefined)?.token;
      const given = typeof fromForm === 'string' && fromForm !== '' ? fromForm : bearer(request);
      if (!given) throw new AppError('UNAUTHORIZED', 'send the ADMIN_BOARD_TOKEN or an admin token as a bearer token');
      let subject = 'board-token';
      if (!isBoardToken(given)) {
        request.headers.authorization = `Bearer ${given}`;
        const caller = await app.resolveCaller(request);
        if (caller.vendor.role !== 'admin' || !isFullToken(caller)) throw new AppError('FORBIDDEN', 'this token does not open the board (admin tokens only)');
        subject = caller.vendor.id;
      }
      const session = app.jwt.sign({ sub: subject, typ: 'board', plan: '', role: 'admin' }, { expiresIn: opts.sessionSeconds });
      const secure = request.protocol === 'https' ? '; Secure' : '';
      void reply.header('set-cookie', `${COOKIE}=${session}; Path=${BOARD_PATH}; Max-Age=${opts.sessionSeconds}; HttpOnly; SameSite=Strict${secure}`);
      request.log.info({ subject }, 'board session opened');
      return reply.redirect(`${BOARD_PATH}/`, 303);
    });
  });

  // The board's own API answers errors as { error: { key } }: they get the
  // API's error fields too (statusCode, code, message), the board's kept.
  app.addHook('onSend', async (request, reply, payload) => {
    if (reply.statusCode < 400 || typeof payload !== 'string') return payload;
    // A browser without a session gets the login form instead of a JSON 401.
    if (reply.statusCode === 401 && request.method === 'GET' && (request.headers.accept ?? '').includes('text/html')) {
      void reply.type('text/html; charset=utf-8').header('cache-control', 'no-store');
      return LOGIN_PAGE;
    }
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

  app.addHook('onRoute', mountAuth({ auth: 'admin', alsoAccept: (request) => hasSession(request) || isBoardToken(bearer(request)) }));
  await app.register(serverAdapter.registerPlugin(), { prefix: BOARD_PATH });
};

const LOGIN_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>imagequeue: Bull Board</title></head>
<body><form method="post" action="${BOARD_PATH}/session">
<label>ADMIN_BOARD_TOKEN or an admin token <input type="password" name="token" autocomplete="off" required></label>
<button type="submit">Open the board</button></form></body></html>
`;

export default routes;

const BOARD_CODES: Record<number, string> = { 400: 'BAD_REQUEST', 401: 'UNAUTHORIZED', 403: 'FORBIDDEN', 404: 'NOT_FOUND', 409: 'CONFLICT' };

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
