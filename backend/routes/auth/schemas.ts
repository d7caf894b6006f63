import { Type } from '@sinclair/typebox';
import { ErrorRef } from '../../schemas/common.js';

export const TokenRequest = Type.Object(
  { apiKey: Type.String({ minLength: 1, maxLength: 200, description: 'the key printed by `npm run vendor -- create`' }) },
  { additionalProperties: false },
);

export const TokenResponse = Type.Object({
  token: Type.String({ description: 'send as `Authorization: Bearer <token>`' }),
  expiresIn: Type.Integer({ description: 'seconds until the token expires' }),
  tokenType: Type.Literal('Bearer'),
  vendorId: Type.String(),
});

export const tokenRouteSchema = {
  tags: ['auth'],
  operationId: 'createToken',
  summary: 'Exchange an API key for a short-lived bearer token',
  body: TokenRequest,
  response: { 200: TokenResponse, 400: ErrorRef, 401: ErrorRef, 429: ErrorRef, 500: ErrorRef, 503: ErrorRef },
};
