import { Type } from '@sinclair/typebox';
import { env } from '../platform/config.js';

/**
 * Variables docker-compose.yml itself reads from .env (as ${NAME:-default}),
 * declared here so the configuration table and .env.example list them with
 * the rest. No process loads this schema; a test checks that every variable
 * the compose file uses is declared somewhere, with the same default.
 */
export const ComposeConfigSchema = Type.Object({
  MYSQL_ROOT_PASSWORD: env.string('imagequeue-root', 'docker compose: root password of the mysql service (set on its first start; change it)'),
  MYSQL_PASSWORD: env.string('imagequeue', 'docker compose: password of the `imagequeue` MySQL user the API and workers connect as (change it)'),
  API_BIND_ADDRESS: env.string('127.0.0.1', 'docker compose: host address the API port is published on (0.0.0.0 = every interface)'),
  PORT: env.int(3000, 'port the API listens on', { minimum: 0, maximum: 65535 }),
  PUBLIC_BASE_URL: env.string('', 'base URL under which the API serves local storage files (/files/…); empty = http://localhost:<PORT>'),
});
