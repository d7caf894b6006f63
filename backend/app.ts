import Fastify, { type FastifyInstance, type RouteOptions } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { logDestination, loggerOptions, type LogTarget } from '../platform/logger.js';
import { parseHostAllowlist } from '../platform/address-guard.js';
import { parseOriginList } from '../platform/origins.js';
import { publicBaseUrl } from '../platform/config-sections.js';
import { kindSet, type AnyJobKind } from '../jobs/kinds.js';
import type { ApiConfig } from './config.js';
import { trustProxyOption } from './trust-proxy.js';
import errors from './plugins/errors.js';
import jsonBody from './plugins/json-body.js';
import mysql from './plugins/mysql.js';
import redis from './plugins/redis.js';
import queues from './plugins/queues.js';
import storage from './plugins/storage.js';
import auth, { routeAuthCheck } from './plugins/auth.js';
import cors from './plugins/cors.js';
import docs from './plugins/docs.js';
import metrics from './plugins/metrics.js';
import rateLimit from './plugins/rate-limit.js';
import idempotency from './plugins/idempotency.js';
import enqueue from './enqueue.js';
import events from './plugins/events.js';
import jobStatus from './plugins/job-status.js';
import authRoutes from './routes/auth/index.js';
import imageQueueRoutes from './routes/image-queue/index.js';
import adminQueueRoutes from './routes/admin/queues.js';
import personsRoutes from './routes/persons/index.js';
import workerRoutes from './routes/worker/index.js';
import adminVendorRoutes from './routes/admin/vendors.js';
import webhookRoutes from './routes/webhooks/index.js';
import dashboardRoutes from './routes/dashboard/index.js';
import boardRoutes from './routes/admin/board.js';
import { pixelBudgetOf } from '../jobs/pixel-budget.js';
import removeBgRoutes from './routes/removebg/index.js';

export interface BuildOptions {
  /** Replace the logger (`false` silences). */
  logger?: boolean | object;
  /** Where the API's own logger writes its scrubbed lines (default stdout; tests collect them). */
  logStream?: LogTarget;
  /** Called for every route as it is registered (tests enumerate the routes with it). */
  onRoute?: (route: RouteOptions) => void;
  /** job kinds served beside the registry's (jobs/kinds.ts): a test registers a throwaway kind with this */
  jobKinds?: readonly AnyJobKind[];
}

/**
 * Builds the API as a Fastify instance without listening, so tests can
 * `inject` and server.ts can `listen`. Shared resources are plugins that
 * close themselves on `app.close()`.
 */
export async function buildApp(config: ApiConfig, options: BuildOptions = {}): Promise<FastifyInstance> {
  // Checked before anything connects, so a bad value leaves nothing open.
  const corsOrigins = originList('CORS_ORIGINS', config.CORS_ORIGINS);
  const app = Fastify({
    logger: options.logger ?? { ...loggerOptions(config.LOG_LEVEL, 'api'), stream: logDestination(options.logStream) },
    trustProxy: trustProxyOption(config.TRUST_PROXY),
    bodyLimit: 1024 * 1024,
    // A slow upload cannot hold a connection and its buffered parts for ever.
    // Node 20 reads the request deadline only when the server is created and
    // checks it on an interval (30 s by default), so both go in `http` too.
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    connectionTimeout: config.CONNECTION_TIMEOUT_MS,
    http: {
      requestTimeout: config.REQUEST_TIMEOUT_MS,
      connectionsCheckingInterval: config.REQUEST_TIMEOUT_MS > 0 ? Math.min(30_000, Math.max(100, Math.floor(config.REQUEST_TIMEOUT_MS / 4))) : 30_000,
    },
    // A caller's X-Request-Id is kept for tracing only when it looks like an
    // id: it is written into every log line of the request.
    requestIdHeader: false,
    genReqId: (request) => callerRequestId(request.headers['x-request-id']) ?? crypto.randomUUID(),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false, discriminator: true } },
  }).withTypeProvider<TypeBoxTypeProvider>();
  if (options.onRoute) app.addHook('onRoute', options.onRoute);

  // First, so that it sees every route: each must say who may call it (config.auth).
  await app.register(routeAuthCheck);
  await app.register(errors);
  await app.register(jsonBody);
  await app.register(docs, { publicBaseUrl: publicBaseUrl(config) });
  await app.register(metrics, { token: config.METRICS_TOKEN, bullPrefix: config.BULL_PREFIX });
  await app.register(mysql, { url: config.MYSQL_URL, poolSize: config.MYSQL_POOL_SIZE });
  await app.register(redis, { url: config.REDIS_URL });
  await app.register(queues, {
    redisUrl: config.REDIS_URL,
    prefix: config.BULL_PREFIX,
    attempts: config.JOB_ATTEMPTS,
    backoffMs: config.JOB_BACKOFF_MS,
    keepCompleted: config.QUEUE_KEEP_COMPLETED,
    keepFailed: config.QUEUE_KEEP_FAILED,
    kinds: kindSet(options.jobKinds),
  });
  await app.register(storage, config);
  await app.register(auth, { secret: config.JWT_SECRET, expires: config.JWT_EXPIRES, vendorCacheMs: config.VENDOR_CACHE_MS });
  // After auth: a real request's Origin is checked against its caller's vendor.
  await app.register(cors, {
    defaultOrigins: corsOrigins,
    maxAgeSeconds: config.CORS_MAX_AGE_SECONDS,
    cacheMs: config.VENDOR_CACHE_MS,
    publicBaseUrl: publicBaseUrl(config),
  });
  await app.register(rateLimit, { plans: config, prefix: config.BULL_PREFIX, adminPerMinute: config.ADMIN_RATE_LIMIT_PER_MINUTE });
  await app.register(idempotency, { ttlMs: config.IDEMPOTENCY_TTL_MS });
  await app.register(events, { redisUrl: config.REDIS_URL, prefix: config.BULL_PREFIX });
  await app.register(jobStatus, { cacheMs: config.JOB_READ_CACHE_MS, waitsMax: config.JOB_WAITS_MAX, waitsMaxPerVendor: config.JOB_WAITS_MAX_PER_VENDOR });
  await app.register(enqueue, {
    mysqlUrl: config.MYSQL_URL,
    maxRows: config.ENQUEUE_GROUP_MAX_ROWS,
    concurrency: config.ENQUEUE_GROUP_CONCURRENCY,
    idempotencyTtlMs: config.IDEMPOTENCY_TTL_MS,
    bullPrefix: config.BULL_PREFIX,
  });

  await app.register(authRoutes, { prefix: '/api/auth' });
  await app.register(imageQueueRoutes, {
    prefix: '/api/image-queue',
    attempts: config.JOB_ATTEMPTS,
    maxOutputDimension: config.MAX_OUTPUT_DIMENSION,
    pixelBudget: pixelBudgetOf(config),
    allowPrivateSourceUrls: config.ALLOW_PRIVATE_SOURCE_URLS,
    allowedPrivateHosts: sourceAllowlist(config.SOURCE_ALLOWED_PRIVATE_HOSTS),
    bullPrefix: config.BULL_PREFIX,
    statsCacheMs: config.STATS_CACHE_MS,
    bulkBodyLimit: config.BULK_BODY_LIMIT_BYTES,
    uploads: {
      maxFileBytes: config.UPLOAD_MAX_FILE_BYTES,
      maxFiles: config.UPLOAD_MAX_FILES,
      maxTotalBytes: config.UPLOAD_MAX_TOTAL_BYTES,
      maxPixels: config.MAX_INPUT_PIXELS,
    },
    events: { heartbeatMs: config.SSE_HEARTBEAT_MS, maxStreamsPerVendor: config.SSE_MAX_STREAMS_PER_VENDOR },
  });
  await app.register(removeBgRoutes, {
    prefix: '/v1.0',
    attempts: config.JOB_ATTEMPTS,
    syncWaitMs: config.SYNC_WAIT_MS,
    maxInputPixels: config.MAX_INPUT_PIXELS,
    vendorCacheMs: config.VENDOR_CACHE_MS,
    allowPrivateSourceUrls: config.ALLOW_PRIVATE_SOURCE_URLS,
    allowedPrivateHosts: sourceAllowlist(config.SOURCE_ALLOWED_PRIVATE_HOSTS),
    uploads: {
      maxFileBytes: config.UPLOAD_MAX_FILE_BYTES,
      maxFiles: 1,
      maxTotalBytes: config.UPLOAD_MAX_FILE_BYTES,
      maxPixels: config.MAX_INPUT_PIXELS,
    },
  });
  await app.register(adminQueueRoutes, { prefix: '/api/admin', attempts: config.JOB_ATTEMPTS });
  await app.register(personsRoutes, { prefix: '/api/persons' });
  await app.register(workerRoutes, { prefix: '/api/worker', bullPrefix: config.BULL_PREFIX, backlogMax: config.HEALTH_BACKLOG_MAX });
  await app.register(adminVendorRoutes, { prefix: '/api/admin/vendors', retention: config });
  await app.register(webhookRoutes, {
    prefix: '/api/webhooks',
    allowPrivate: config.ALLOW_PRIVATE_WEBHOOK_URLS,
    allowedPrivateHosts: hostAllowlist('WEBHOOK_ALLOWED_PRIVATE_HOSTS', config.WEBHOOK_ALLOWED_PRIVATE_HOSTS),
    allowHttp: config.ALLOW_HTTP_WEBHOOKS,
  });
  await app.register(dashboardRoutes);
  await app.register(boardRoutes, {
    boardToken: config.ADMIN_BOARD_TOKEN,
    sessionSeconds: config.ADMIN_BOARD_SESSION_SECONDS,
    redisUrl: config.REDIS_URL,
    bullPrefix: config.BULL_PREFIX,
  });
  return app;
}

const REQUEST_ID = /^[\w.:-]{1,128}$/;

function callerRequestId(header: string | string[] | undefined): string | undefined {
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : undefined;
}

/** The same private-host allowlist the worker fetches with, so the API does not refuse what the worker would fetch. */
function sourceAllowlist(raw: string): string[] {
  return hostAllowlist('SOURCE_ALLOWED_PRIVATE_HOSTS', raw);
}

function originList(name: string, raw: string): string[] {
  try {
    return parseOriginList(raw);
  } catch (error) {
    throw new Error(`${name}: ${(error as Error).message}`, { cause: error });
  }
}

function hostAllowlist(name: string, raw: string): string[] {
  try {
    return parseHostAllowlist(raw);
  } catch (error) {
    throw new Error(`${name}: ${(error as Error).message}`, { cause: error });
  }
}
