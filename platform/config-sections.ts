import { env } from './config.js';
import { PLAN_RETENTION_PATTERN } from '../jobs/retention.js';

/**
 * Configuration sections shared by several processes. Each process's own
 * config module spreads the ones it needs into its schema.
 */
export const LogSection = {
  LOG_LEVEL: env.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info', 'pino log level'),
  NODE_ENV: env.enum(['development', 'production', 'test'], 'development', 'runtime mode (development, production, test)'),
};

export const MysqlSection = {
  MYSQL_URL: env.string('mysql://root@127.0.0.1:3306/imagequeue', 'MySQL/MariaDB connection URL; the database is created by `npm run migrate` if missing'),
  MYSQL_POOL_SIZE: env.int(10, "connections in each process's MySQL pool", { minimum: 1, maximum: 500 }),
};

export const RedisSection = {
  REDIS_URL: env.string(
    'redis://127.0.0.1:6379',
    'Redis for Bull queues, rate limits, events and heartbeats: redis://[:password@]host:port[/db], rediss:// for TLS, or redis+sentinel://host1:26379,host2:26379/master-name for Sentinel failover',
  ),
  BULL_PREFIX: env.string('bull', 'key prefix of every Bull queue; use a hash tag such as {iq} on Redis Cluster', { pattern: '^[A-Za-z0-9:_{}.-]{1,64}$' }),
};

export const StorageSection = {
  STORAGE_DRIVER: env.enum(
    ['auto', 'local', 'cloudinary'],
    'auto',
    'where results and uploads are stored; auto = cloudinary when CLOUDINARY_URL is set, else local',
  ),
  STORAGE_LOCAL_DIR: env.string('./data/storage', 'directory for local storage (must be shared by API and workers)'),
  PUBLIC_BASE_URL: env.string('', 'base URL under which the API serves local storage files (/files/…); empty = http://localhost:<PORT>', {
    pattern: '^(https?://[^\\s]+)?$',
  }),
  PORT: env.int(3000, 'port the API listens on', { minimum: 0, maximum: 65535 }),
  CLOUDINARY_URL: env.string('', 'cloudinary://key:secret@cloud_name[?upload_prefix=…]; enables Cloudinary storage'),
  CLOUDINARY_FOLDER: env.string('imagequeue', 'root folder in Cloudinary; results go to <folder>/<vendor>/<project>'),
  STORAGE_TIMEOUT_MS: env.int(60_000, 'timeout of one storage upload', { minimum: 1000 }),
  STORAGE_RETRIES: env.int(2, 'extra tries of a failed storage upload within one job attempt', { minimum: 0, maximum: 10 }),
};

/** Where result and upload URLs point: PUBLIC_BASE_URL, or the API on this host at PORT when it is empty. */
export function publicBaseUrl(config: { PUBLIC_BASE_URL: string; PORT: number }): string {
  return config.PUBLIC_BASE_URL || `http://localhost:${config.PORT}`;
}

export const SourceSection = {
  ALLOW_PRIVATE_SOURCE_URLS: env.bool(false, 'allow source URLs that resolve to loopback/private/link-local addresses (never in production)'),
  SOURCE_ALLOWED_PRIVATE_HOSTS: env.string(
    '',
    'comma-separated host:port pairs that may be fetched although private (an internal image host); redirects from them are still checked',
  ),
  SOURCE_MAX_BYTES: env.int(25 * 1024 * 1024, 'largest source image accepted, in bytes', { minimum: 1024 }),
  SOURCE_TIMEOUT_MS: env.int(20_000, 'time limit for fetching one source image', { minimum: 100 }),
  SOURCE_MAX_REDIRECTS: env.int(3, 'redirects followed when fetching a source (each re-checked)', { minimum: 0, maximum: 10 }),
  MAX_INPUT_PIXELS: env.int(50_000_000, 'largest decoded image (width × height) accepted', { minimum: 1 }),
  MAX_OUTPUT_PIXELS: env.int(0, 'largest image (width × height) a processing step may make, rotate and variants included; 0 = MAX_INPUT_PIXELS', {
    minimum: 0,
  }),
  MAX_JOB_ENCODED_PIXELS: env.int(0, 'most pixels the images one job stores may hold together; 0 = 4 × MAX_OUTPUT_PIXELS', { minimum: 0 }),
};

export const MetricsSection = {
  METRICS_TOKEN: env.string('', 'bearer token /metrics requires (Authorization: Bearer <token>); empty = /metrics is open (keep it on a private network)'),
};

/** Webhooks (issue 10): read by the API (checks a vendor's URL when it is set) and the worker (delivers). */
export const WebhookSection = {
  ALLOW_PRIVATE_WEBHOOK_URLS: env.bool(false, 'allow webhook URLs that resolve to loopback/private/link-local addresses (never in production)'),
  WEBHOOK_ALLOWED_PRIVATE_HOSTS: env.string('', 'comma-separated host:port pairs a webhook may be delivered to although private (an internal receiver)'),
  ALLOW_HTTP_WEBHOOKS: env.bool(false, 'allow plain http:// webhook URLs (refused at registration and delivery otherwise; development and tests)'),
};

/**
 * Retention per plan (issue 21; jobs/retention.ts): read by the worker
 * (its retention sweeper) and the API (admin views, usage). A kind left out
 * keeps the built-in default shown in the description.
 */
export const RetentionSection = {
  RETENTION_STANDARD: env.string(
    'jobs=30d,uploads=7d,deadLetters=30d,events=7d,webhookDeliveries=7d',
    'retention of the standard plan: kind=period pairs (kinds jobs, uploads, deadLetters, events, webhookDeliveries; periods like 90s, 12h, 30d)',
    { pattern: PLAN_RETENTION_PATTERN },
  ),
  RETENTION_UNLIMITED: env.string(
    'jobs=365d,uploads=30d,deadLetters=90d,events=30d,webhookDeliveries=30d',
    'retention of the unlimited plan, written like RETENTION_STANDARD',
    { pattern: PLAN_RETENTION_PATTERN },
  ),
};
