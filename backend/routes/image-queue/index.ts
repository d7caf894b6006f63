import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { AppError } from '../../../jobs/errors.js';
import enqueueRoutes from './enqueue-routes.js';
import statusRoutes from './status-routes.js';
import controlRoutes from './control-routes.js';
import eventsRoutes, { type EventsRouteOptions } from './events-routes.js';
import type { UploadLimits } from './uploads.js';
import type { PixelBudget } from '../../../jobs/pixel-budget.js';

/**
 * /api/image-queue: every route is vendor-scoped by the bearer token
 * (`config.auth: 'vendor'`), checked in onRequest so that the per-vendor rate
 * limit knows the vendor before the body is read or validated.
 */
export interface ImageQueueOptions {
  attempts: number;
  maxOutputDimension: number;
  /** MAX_OUTPUT_PIXELS and MAX_JOB_ENCODED_PIXELS (jobs/pixel-budget.ts) */
  pixelBudget: PixelBudget;
  allowPrivateSourceUrls: boolean;
  /** host:port pairs that may be fetched although private (SOURCE_ALLOWED_PRIVATE_HOSTS) */
  allowedPrivateHosts: readonly string[];
  bullPrefix: string;
  statsCacheMs: number;
  bulkBodyLimit: number;
  uploads: UploadLimits;
  events: EventsRouteOptions;
}

const BODY_TYPES = new Set(['application/json', 'multipart/form-data']);

const routes: FastifyPluginAsyncTypebox<ImageQueueOptions> = async (app, opts) => {
  await app.register(multipart, { throwFileSizeLimit: true });
  // Fastify also parses text/plain, and a body of a type without a schema is
  // not validated: refuse every type the routes do not describe.
  app.addHook('preValidation', async (request: FastifyRequest) => {
    if (request.method === 'POST' && !BODY_TYPES.has(request.mediaType ?? '')) {
      throw new AppError('UNSUPPORTED_MEDIA_TYPE', `send application/json or multipart/form-data, not ${request.mediaType ?? 'no content type'}`);
    }
  });
  // opts carries this plugin's own prefix; the children must not add it again.
  const { prefix: _prefix, ...childOpts } = opts as ImageQueueOptions & { prefix?: string };
  await app.register(enqueueRoutes, childOpts);
  await app.register(statusRoutes, childOpts);
  await app.register(controlRoutes, childOpts);
  await app.register(eventsRoutes, childOpts.events);
};

export default routes;
