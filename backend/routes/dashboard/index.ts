import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';
import { mountAuth } from '../../plugins/auth.js';

/**
 * /dashboard: the vendors' page (web/), static files with no build step.
 * It signs in with an API key through the API like any client, so the
 * routes here need no auth of their own. The CSP keeps scripts to this
 * origin; images may come from anywhere a result or a source URL points.
 */
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  'img-src * data: blob:',
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

const routes: FastifyPluginAsync = async (app) => {
  app.addHook('onSend', async (_request, reply) => {
    void reply.header('content-security-policy', CSP);
    void reply.header('x-content-type-options', 'nosniff');
    void reply.header('referrer-policy', 'no-referrer');
  });
  app.addHook('onRoute', mountAuth({ auth: 'public' }));
  app.get('/dashboard', { schema: { hide: true } }, async (_request, reply) => reply.redirect('/dashboard/', 301));
  await app.register(fastifyStatic, {
    root: webRoot(),
    prefix: '/dashboard/',
    index: ['index.html'],
    list: false,
    dotfiles: 'deny',
    decorateReply: false,
    schemaHide: true,
    // Small files that change with each release: revalidate, never serve stale.
    cacheControl: true,
    maxAge: 0,
  });
};

export default routes;

/** web/ beside the sources (tsx) or beside dist/ (the compiled build). */
function webRoot(): string {
  for (const up of ['../../../web/', '../../../../web/']) {
    const path = fileURLToPath(new URL(up, import.meta.url));
    if (existsSync(`${path}index.html`)) return path;
  }
  throw new Error('the dashboard files (web/) are missing');
}
