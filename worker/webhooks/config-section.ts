import { env } from '../../platform/config.js';

/** Webhook delivery in the worker (issue 10); the defaults retry for about a day (see jobs/webhooks.ts lastRetryAfterMs). */
export const WebhookWorkerSection = {
  WEBHOOK_DELIVERY: env.bool(true, 'whether this worker process delivers webhooks (the webhooks queue and its outbox)'),
  WEBHOOK_ATTEMPTS: env.int(13, 'tries of one webhook delivery; with WEBHOOK_BACKOFF_MS the last is about a day after the first', { minimum: 1, maximum: 30 }),
  WEBHOOK_BACKOFF_MS: env.int(10_500, 'first webhook retry delay; the n-th waits this × (2^n − 1)', { minimum: 0 }),
  WEBHOOK_TIMEOUT_MS: env.int(10_000, 'time limit of one webhook POST (connect to last byte)', { minimum: 100 }),
  WEBHOOK_CONCURRENCY: env.int(10, 'webhook POSTs in flight at once per worker process', { minimum: 1, maximum: 256 }),
  WEBHOOK_VENDOR_CONCURRENCY: env.int(2, "one vendor's webhook POSTs in flight at once per worker process, so a slow receiver cannot hold every slot", {
    minimum: 1,
    maximum: 256,
  }),
  WEBHOOK_OUTBOX_INTERVAL_MS: env.int(1000, 'how often the worker turns new final events into webhook deliveries', { minimum: 50 }),
};
