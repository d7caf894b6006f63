import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { findVendorByApiKey } from '../../../db/repos/vendors.js';
import { AppError } from '../../../jobs/errors.js';
import { looksLikeApiKey } from '../../../platform/api-keys.js';
import { badFields } from '../../plugins/errors.js';
import { BROWSER_TOKEN_MAX_S, PROJECT_SCOPES, SCOPES, type Scope } from '../../plugins/auth.js';
import { tokenRouteSchema } from './schemas.js';

/**
 * POST /api/auth/token: the API key (which never leaves the vendor's
 * backend) buys a bearer token. With `scope` and/or `projectId` it is a
 * browser token: it may do only what its scopes name, only in its project,
 * for at most an hour; its requests still count against the vendor's rate
 * limits (they are keyed by vendor, not by token).
 */
const SCOPE_SET: ReadonlySet<string> = new Set(SCOPES);
const VENDOR_WIDE: ReadonlySet<Scope> = new Set<Scope>(['webhooks:read', 'webhooks:write', 'persons:write']);

const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/token', { schema: tokenRouteSchema, config: { auth: 'public' } }, async (request) => {
    const { apiKey, projectId } = request.body;
    const scopes = parseScopeField(request.body.scope);
    if (scopes && projectId !== undefined) {
      const wide = scopes.filter((s) => VENDOR_WIDE.has(s));
      if (wide.length > 0) {
        throw badFields([{ path: 'body/scope', message: `${wide.join(' ')} cover the whole vendor and cannot be given to a token restricted to one project` }]);
      }
    }
    const restricted = scopes !== undefined || projectId !== undefined;
    const max = restricted ? Math.min(BROWSER_TOKEN_MAX_S, app.tokenLifetimeSeconds) : app.tokenLifetimeSeconds;
    const { expiresIn } = request.body;
    if (expiresIn !== undefined && expiresIn > max) {
      const why = restricted ? `a scoped or project token lives at most ${max} s` : `a full vendor token lives at most ${max} s (JWT_EXPIRES)`;
      throw badFields([{ path: 'body/expiresIn', message: `must be at most ${max}: ${why}` }]);
    }
    const vendor = looksLikeApiKey(apiKey) ? await findVendorByApiKey(app.db, apiKey) : undefined;
    if (!vendor) throw new AppError('UNAUTHORIZED', 'unknown API key');
    const signed = await app.signVendorToken(vendor, {
      ...(scopes ? { scopes } : {}),
      ...(projectId !== undefined ? { projectId } : {}),
      ...(expiresIn !== undefined || restricted ? { expiresIn: expiresIn ?? max } : {}),
    });
    const held = scopes ?? (projectId !== undefined ? PROJECT_SCOPES : null);
    return {
      token: signed.token,
      expiresIn: signed.expiresIn,
      tokenType: 'Bearer' as const,
      vendorId: vendor.id,
      scope: held ? held.join(' ') : null,
      projectId: projectId ?? null,
    };
  });
};

export default routes;

/** `scope` as a list of known scopes, deduplicated in the order given; undefined when left out. A clear 400 for anything else. */
function parseScopeField(field: string | string[] | undefined): Scope[] | undefined {
  if (field === undefined) return undefined;
  const names = (Array.isArray(field) ? field : [field]).flatMap((s) => s.split(/[\s,]+/)).filter((s) => s !== '');
  const unknown = names.filter((s) => !SCOPE_SET.has(s));
  if (unknown.length > 0) {
    throw badFields([{ path: 'body/scope', message: `unknown scope ${unknown.map((s) => JSON.stringify(s)).join(', ')}; known: ${SCOPES.join(' ')}` }]);
  }
  if (names.length === 0) throw badFields([{ path: 'body/scope', message: `must name at least one of ${SCOPES.join(' ')} (leave it out for a full token)` }]);
  return [...new Set(names as Scope[])];
}
