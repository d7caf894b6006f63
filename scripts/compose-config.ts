import { Type } from '@sinclair/typebox';
import { env } from '../platform/config.js';
import { RembgConfigSchema } from '../rembg/config.js';

/**
 * Variables docker-compose.yml itself reads from .env (as ${NAME:-default}),
 * declared here so the configuration table and .env.example list them with
 * the rest. No process loads this schema; a test checks that every variable
 * the compose file uses is declared somewhere, with the same default. The
 * rembg variables the compose file passes on are the rembg service's own
 * declarations.
 */
export const ComposeConfigSchema = Type.Object({
  MYSQL_ROOT_PASSWORD: env.string('', 'docker compose (required, no default): root password of the mysql service, set on its first start'),
  MYSQL_PASSWORD: env.string('', 'docker compose (required, no default): password of the `imagequeue` MySQL user the API and workers connect as'),
  REDIS_PASSWORD: env.string(
    '',
    'docker compose (required, no default): the password Redis requires (requirepass), which the API and workers put in REDIS_URL; URL-safe characters (openssl rand -hex 24)',
  ),
  API_BIND_ADDRESS: env.string('127.0.0.1', 'docker compose: host address the API port is published on (0.0.0.0 = every interface)'),
  PORT: env.int(3000, 'port the API listens on', { minimum: 0, maximum: 65535 }),
  PUBLIC_BASE_URL: env.string('', 'base URL under which the API serves local storage files (/files/…); empty = http://localhost:<PORT>'),
  REMBG_CONCURRENCY: RembgConfigSchema.properties.REMBG_CONCURRENCY,
  REMBG_QUEUE: RembgConfigSchema.properties.REMBG_QUEUE,
  REMBG_THREADS: RembgConfigSchema.properties.REMBG_THREADS,
});
