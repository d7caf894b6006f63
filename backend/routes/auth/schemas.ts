import { Type } from '@sinclair/typebox';
import { ErrorRef, vendorIdString } from '../../schemas/common.js';
import { BROWSER_TOKEN_MAX_S, SCOPES } from '../../plugins/auth.js';

export const TokenRequest = Type.Object(
  {
    apiKey: Type.String({ minLength: 1, maxLength: 200, description: 'the key printed by `npm run vendor -- create`' }),
    scope: Type.Optional(
      Type.Union([Type.String({ maxLength: 200 }), Type.Array(Type.String({ maxLength: 40 }), { maxItems: 10 })], {
        description: `what the token may do: a list or a space-separated string of ${SCOPES.join(', ')}. Left out: everything (a full vendor token), or with projectId: jobs:read jobs:write persons:read`,
      }),
    ),
    projectId: Type.Optional(vendorIdString('the only project the token may enqueue into or read')),
    expiresIn: Type.Optional(
      Type.Integer({
        minimum: 1,
        description: `seconds until the token expires: at most ${BROWSER_TOKEN_MAX_S} for a scoped or project token (its default too, or JWT_EXPIRES if shorter), at most JWT_EXPIRES for a full one`,
      }),
    ),
  },
  { additionalProperties: false },
);

export const TokenResponse = Type.Object({
  token: Type.String({ description: 'send as `Authorization: Bearer <token>`' }),
  expiresIn: Type.Integer({ description: 'seconds until the token expires' }),
  tokenType: Type.Literal('Bearer'),
  vendorId: Type.String(),
  scope: Type.Union([Type.String(), Type.Null()], { description: 'the scopes the token holds, space-separated; null: every scope (a full vendor token)' }),
  projectId: Type.Union([Type.String(), Type.Null()], { description: 'the one project the token may touch; null: any' }),
});

export const tokenRouteSchema = {
  tags: ['auth'],
  operationId: 'createToken',
  summary: 'Exchange an API key for a short-lived bearer token (optionally scoped and restricted to one project, for a browser)',
  body: TokenRequest,
  response: { 200: TokenResponse, 400: ErrorRef, 401: ErrorRef, 429: ErrorRef, 500: ErrorRef, 503: ErrorRef },
};
