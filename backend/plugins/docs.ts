import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { mountAuth } from './auth.js';

/**
 * OpenAPI generated from the route schemas, browsable at /docs and as JSON at
 * /docs/json. Nothing here is written by hand.
 */
export default fp(
  async (app, opts: { publicBaseUrl: string }) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: {
          title: 'imagequeue API',
          version: '1',
          description:
            'Background removal, passport/ID face crops and image processing as durable jobs. Get a token with POST /api/auth/token, then send it as `Authorization: Bearer <token>`.',
        },
        servers: [{ url: opts.publicBaseUrl }],
        components: {
          securitySchemes: {
            bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
            removeBgApiKey: { type: 'apiKey', in: 'header', name: 'X-Api-Key', description: 'your API key, for the remove.bg-compatible routes only' },
          },
        },
      },
      refResolver: { buildLocalReference: (json, _base, _fragment, i) => (typeof json['$id'] === 'string' ? json['$id'] : `def-${i}`) },
    });
    await app.register(async (scope) => {
      scope.addHook('onRoute', mountAuth({ auth: 'public' }));
      await scope.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true } });
    });
  },
  { name: 'docs', dependencies: ['route-auth-check'] },
);
