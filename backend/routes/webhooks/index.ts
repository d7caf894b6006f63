import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { listDeliveries, setVendorWebhook, vendorWebhook } from '../../../db/repos/webhooks.js';
import { AppError } from '../../../jobs/errors.js';
import { SIGNATURE_HEADER } from '../../../jobs/webhooks.js';
import { checkUrl } from '../../../platform/address-guard.js';
import { randomToken } from '../../../platform/ids.js';
import { deleteWebhookSchema, deliveriesSchema, getWebhookSchema, putWebhookSchema } from './schemas.js';
import { vendorOf } from '../../plugins/auth.js';

/**
 * /api/webhooks: the token's vendor sets where its events are POSTed and
 * gets the secret they are signed with (once; setting the URL again rotates
 * it). The URL passes the same SSRF policy as source URLs here, and the
 * worker checks every address again when it delivers.
 */
export interface WebhookRoutesOptions {
  allowPrivate: boolean;
  allowedPrivateHosts: readonly string[];
  allowHttp: boolean;
}

const routes: FastifyPluginAsyncTypebox<WebhookRoutesOptions> = async (app, opts) => {
  const reading = { auth: 'vendor', scopes: ['webhooks:read'], rateLimitTier: 'polling' } as const;
  const writing = { auth: 'vendor', scopes: ['webhooks:write'], rateLimitTier: 'polling' } as const;

  app.get('/', { schema: getWebhookSchema, config: reading }, async (request) => {
    const hook = await vendorWebhook(app.db, vendorOf(request).id);
    return { webhookUrl: hook?.webhook_url ?? null, hasSecret: Boolean(hook?.webhook_secret), signatureHeader: SIGNATURE_HEADER };
  });

  app.put('/', { schema: putWebhookSchema, config: writing }, async (request) => {
    const url = checkWebhookUrl(request.body.webhookUrl, opts);
    const secret = `whsec_${randomToken(32)}`;
    if (!(await setVendorWebhook(app.db, vendorOf(request).id, url.toString(), secret))) throw new AppError('NOT_FOUND', 'no such vendor');
    request.log.info({ host: url.host }, 'webhook URL set');
    return { webhookUrl: url.toString(), secret, signatureHeader: SIGNATURE_HEADER };
  });

  app.delete('/', { schema: deleteWebhookSchema, config: writing }, async (request, reply) => {
    await setVendorWebhook(app.db, vendorOf(request).id, null, null);
    return reply.code(204).send(null);
  });

  app.get('/deliveries', { schema: deliveriesSchema, config: reading }, async (request) => {
    const { cursor, limit } = request.query;
    const page = await listDeliveries(app.db, vendorOf(request).id, cursor ?? null, limit + 1);
    const rows = page.slice(0, limit);
    return {
      deliveries: rows.map((d) => ({
        id: d.id,
        eventId: Number(d.event_seq),
        eventType: d.event_type,
        url: d.url,
        attempt: d.attempt,
        outcome: d.outcome,
        statusCode: d.status_code,
        error: d.error,
        durationMs: d.duration_ms,
        nextRetryAt: d.next_retry_at?.toISOString() ?? null,
        createdAt: d.created_at.toISOString(),
      })),
      nextCursor: page.length > limit ? (rows[rows.length - 1]?.id ?? null) : null,
    };
  });
};

export default routes;

/** The SSRF guard and the https rule; a refusal names the field. */
function checkWebhookUrl(raw: string, opts: WebhookRoutesOptions): URL {
  try {
    return checkUrl(raw, { allowPrivate: opts.allowPrivate, purpose: 'webhook', allowedPrivateHosts: opts.allowedPrivateHosts, requireHttps: !opts.allowHttp });
  } catch (error) {
    if (error instanceof AppError)
      throw new AppError(error.code, `body/webhookUrl: ${error.message}`, { details: { fields: [{ path: 'body/webhookUrl', message: error.message }] } });
    throw error;
  }
}
