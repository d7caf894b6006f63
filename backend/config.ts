import { Type, type Static } from '@sinclair/typebox';
import { env, loadConfig, type LoadOptions } from '../platform/config.js';
import {
  LogSection,
  MetricsSection,
  MysqlSection,
  RedisSection,
  RetentionSection,
  SourceSection,
  StorageSection,
  WebhookSection,
} from '../platform/config-sections.js';
import { EventsSection } from './events-config.js';
import { VendorApiSection } from './vendor-api-config.js';
import { RemoveBgSection } from './removebg-config.js';
import { CorsSection } from './cors-config.js';

export const ApiConfigSchema = Type.Object({
  ...LogSection,
  ...MysqlSection,
  ...RedisSection,
  ...StorageSection,
  ...SourceSection,
  ...VendorApiSection,
  ...MetricsSection,
  ...WebhookSection,
  ...EventsSection,
  ...RemoveBgSection,
  ...CorsSection,
  ...RetentionSection,
  HOST: env.string('0.0.0.0', 'address the API listens on'),
  JWT_SECRET: env.string(undefined, 'HS256 secret for vendor tokens, at least 32 characters (npm start writes a random one to .env on first run)', {
    minLength: 32,
  }),
  JWT_EXPIRES: env.string('1h', 'lifetime of a vendor token (e.g. 15m, 1h, 1d)', { pattern: '^[0-9]+(ms|s|m|h|d)?$' }),
  TRUST_PROXY: env.string(
    'false',
    'whose X-Forwarded-For to believe, so per-IP limits and logs see the client behind a load balancer: false, true (any peer: only behind a proxy that overwrites the header), a hop count (1 = one proxy of ours in front), or a comma list of proxy IPs/CIDRs (10.0.0.0/8,192.168.1.7)',
  ),
  VENDOR_CACHE_MS: env.int(2000, 'how long the API caches a vendor row (plan, deletion) between checks', { minimum: 0 }),
  JOB_ATTEMPTS: env.int(3, 'attempts per job before it is dead-lettered', { minimum: 1, maximum: 20 }),
  JOB_BACKOFF_MS: env.int(2000, 'first retry delay; doubles each retry (2 s, 4 s, 8 s)', { minimum: 0 }),
  QUEUE_KEEP_COMPLETED: env.int(1000, 'completed jobs Bull keeps in Redis (the ledger keeps all)', { minimum: 0 }),
  QUEUE_KEEP_FAILED: env.int(5000, 'failed jobs Bull keeps in Redis (the ledger keeps all)', { minimum: 0 }),
  MAX_OUTPUT_DIMENSION: env.int(8192, 'largest width/height a processing operation may ask for', { minimum: 16, maximum: 16384 }),
  REQUEST_TIMEOUT_MS: env.int(120_000, 'longest a client may take to send a whole request, upload included (408 after; 0 = no limit)', { minimum: 0 }),
  CONNECTION_TIMEOUT_MS: env.int(120_000, 'an idle connection is closed after this long (keep above SSE_HEARTBEAT_MS and the 60 s long-poll; 0 = never)', {
    minimum: 0,
  }),
});

export type ApiConfig = Static<typeof ApiConfigSchema>;

export function loadApiConfig(options?: LoadOptions): ApiConfig {
  return loadConfig(ApiConfigSchema, options);
}
