import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { findVendorByApiKey } from '../../../db/repos/vendors.js';
import { AppError } from '../../../jobs/errors.js';
import { looksLikeApiKey } from '../../../platform/api-keys.js';
import { tokenRouteSchema } from './schemas.js';

const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/token', { schema: tokenRouteSchema, config: { auth: 'public' } }, async (request) => {
    const { apiKey } = request.body;
    const vendor = looksLikeApiKey(apiKey) ? await findVendorByApiKey(app.db, apiKey) : undefined;
    if (!vendor) throw new AppError('UNAUTHORIZED', 'unknown API key');
    const { token, expiresIn } = await app.signVendorToken(vendor);
    return { token, expiresIn, tokenType: 'Bearer' as const, vendorId: vendor.id };
  });
};

export default routes;
