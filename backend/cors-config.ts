import { env } from '../platform/config.js';

/** Browser access from other origins (CORS): backend/plugins/cors.ts. */
export const CorsSection = {
  CORS_ORIGINS: env.string(
    '',
    'comma-separated web origins (https://app.example.com) whose pages may call the API, for vendors with no cors_origins of their own (admin API or `npm run vendor -- cors`); empty: none',
  ),
  CORS_MAX_AGE_SECONDS: env.int(600, 'how long a browser may cache a CORS preflight answer (Access-Control-Max-Age; browsers cap it, Chrome at 7200)', {
    minimum: 0,
    maximum: 86_400,
  }),
};
