import type Bull from 'bull';
import type { Redis } from 'ioredis';
import type { Db } from '../../db/connect.js';
import { clearWebhookPending, findEvent, pendingWebhookEvents } from '../../db/repos/events.js';
import { findJob, readJobResults } from '../../db/repos/jobs.js';
import { batchOutcome, recordDelivery, vendorWebhook } from '../../db/repos/webhooks.js';
import type { JobEventRow } from '../../db/schema.js';
import {
  DELIVERY_HEADER,
  EVENT_HEADER,
  retryDelayMs,
  SIGNATURE_HEADER,
  signatureHeader,
  WEBHOOK_QUEUE,
  type WebhookEvent,
  type WebhookPayload,
} from '../../jobs/webhooks.js';
import { AppError } from '../../jobs/errors.js';
import { newId } from '../../platform/ids.js';
import type { Logger } from '../../platform/logger.js';
import { openWebhookQueue } from '../../platform/queues.js';
import { redisLock } from '../../platform/redis-lock.js';
import { postWebhook, type DeliveryPolicy } from './deliver.js';

/**
 * Webhook delivery, in the worker, on its own Bull queue (`webhooks`).
 *
 * The outbox: final events are written to the ledger's event log with
 * `webhook_pending` set, in the transaction that ends the job. A loop here
 * (one worker at a time, under a Redis lock) turns them into Bull jobs keyed
 * by the event, then clears the flag, so a crash anywhere in between only
 * queues the same delivery again, which Bull ignores while it exists.
 * Each try is logged in webhook_deliveries; Bull retries with exponential
 * backoff for about a day (WEBHOOK_ATTEMPTS, WEBHOOK_BACKOFF_MS).
 *
 * One vendor holds at most WEBHOOK_VENDOR_CONCURRENCY of a process's
 * WEBHOOK_CONCURRENCY slots (issue 18): a delivery whose vendor already has
 * that many POSTs in flight here is put back (Bull's delayed set) at once
 * instead of waiting in a slot, so a receiver that hangs until the timeout
 * holds only its own vendor's slots, and other vendors' events keep moving.
 * Such a put-back is not a try: it is counted apart (`bounces` in the job's
 * data), Bull's attempts are set high enough for them, and the real tries
 * end the job through the backoff strategy below.
 */
export interface WebhookSettings {
  redisUrl: string;
  prefix: string;
  workerId: string;
  attempts: number;
  backoffMs: number;
  concurrency: number;
  /** POSTs of one vendor in flight at once in this process */
  vendorConcurrency: number;
  outboxIntervalMs: number;
  policy: DeliveryPolicy;
}

export interface Webhooks {
  queue: Bull.Queue<WebhookPayload>;
  /** runs the outbox now (tests, and after a worker commits a final event) */
  pump(): Promise<void>;
  close(): Promise<void>;
}

const OUTBOX_BATCH = 200;

export function startWebhooks(db: Db, redis: Redis, log: Logger, settings: WebhookSettings): Webhooks {
  const opened = openWebhookQueue({
    redisUrl: settings.redisUrl,
    prefix: settings.prefix,
    connectionName: `imagequeue-webhooks:${settings.workerId}`,
    attempts: BULL_ATTEMPTS,
    backoffStrategy: (_attemptsMade, error) => nextTryInMs(error, settings.backoffMs),
  });
  const { queue } = opened;
  const inFlight = new Map<string, number>();
  queue.on('error', (error) => log.warn({ err: error, queue: WEBHOOK_QUEUE }, 'queue error'));
  // One worker pumps at a time; the lease is renewed while a (long) run lasts.
  const outboxLock = redisLock(redis, `${settings.prefix}:${WEBHOOK_QUEUE}:outbox-lock`, { ttlMs: 30_000 });
  let pumping: Promise<void> | null = null;
  let stopped = false;

  async function pumpOnce(): Promise<void> {
    await outboxLock.run(async (held) => {
      for (;;) {
        held.signal.throwIfAborted();
        const events = await pendingWebhookEvents(db, OUTBOX_BATCH);
        if (events.length === 0) break;
        await queue.addBulk(events.map((e) => ({ data: { vendorId: e.vendor_id, seq: Number(e.seq) }, opts: { jobId: `${e.vendor_id}-${e.seq}` } })));
        await clearWebhookPending(db, events);
        if (events.length < OUTBOX_BATCH) break;
      }
    });
  }

  function pump(): Promise<void> {
    pumping ??= pumpOnce()
      .catch((error: unknown) => log.warn({ err: error }, 'webhook outbox run failed; will try again'))
      .finally(() => {
        pumping = null;
      });
    return pumping;
  }

  const timer = setInterval(() => {
    if (!stopped) void pump();
  }, settings.outboxIntervalMs);
  timer.unref();

  void queue
    .process(settings.concurrency, async (job: Bull.Job<WebhookPayload>) => {
      const { vendorId } = job.data;
      const busy = inFlight.get(vendorId) ?? 0;
      if (busy >= settings.vendorConcurrency) return putBack(job, settings);
      inFlight.set(vendorId, busy + 1);
      try {
        return await deliver(db, log, settings, job);
      } finally {
        const left = (inFlight.get(vendorId) ?? 1) - 1;
        if (left > 0) inFlight.set(vendorId, left);
        else inFlight.delete(vendorId);
      }
    })
    .catch((error: unknown) => log.error({ err: error, queue: WEBHOOK_QUEUE }, 'queue stopped processing'));

  return {
    queue,
    pump,
    async close() {
      stopped = true;
      clearInterval(timer);
      await pumping;
      await opened.close();
    },
  };
}

/** Bull's own attempts only bound put-backs and tries together; WEBHOOK_ATTEMPTS ends the real tries (nextTryInMs). */
const BULL_ATTEMPTS = 1_000_000;

/** Thrown to hand a slot back: Bull moves the job to its delayed set for `retryInMs`. */
class VendorBusy extends Error {
  constructor(readonly retryInMs: number) {
    super('its vendor has WEBHOOK_VENDOR_CONCURRENCY deliveries in flight here; put back');
  }
}

/** The backoff strategy: a put-back's short wait, the exponential backoff after a failed try, or -1 (no more tries). */
function nextTryInMs(error: unknown, backoffMs: number): number {
  const wait = (error as { retryInMs?: unknown }).retryInMs;
  return typeof wait === 'number' ? wait : backoffMs;
}

async function putBack(job: Bull.Job<WebhookPayload>, settings: WebhookSettings): Promise<never> {
  const bounces = (job.data.bounces ?? 0) + 1;
  await job.update({ ...job.data, bounces });
  // Quick at first (the vendor's slot may free in a moment), then no more
  // often than a POST can last, so a vendor with thousands of events waiting
  // behind a hanging receiver costs Redis little.
  const wait = Math.min(settings.policy.timeoutMs, 100 * 2 ** Math.min(bounces, 12)) + Math.floor(Math.random() * 100);
  throw new VendorBusy(wait);
}

async function deliver(db: Db, log: Logger, settings: WebhookSettings, job: Bull.Job<WebhookPayload>): Promise<string> {
  const { vendorId, seq } = job.data;
  const attempt = job.attemptsMade - (job.data.bounces ?? 0) + 1;
  const [event, hook] = await Promise.all([findEvent(db, vendorId, seq), vendorWebhook(db, vendorId)]);
  if (!event) return 'event pruned';
  if (!hook?.webhook_url || !hook.webhook_secret) return 'no webhook configured';
  const body = JSON.stringify(await webhookEvent(db, event));
  const deliveryId = newId();
  const timestamp = Math.floor(Date.now() / 1000);
  const headers = {
    [SIGNATURE_HEADER]: signatureHeader(hook.webhook_secret, body, timestamp),
    [EVENT_HEADER]: event.type,
    [DELIVERY_HEADER]: deliveryId,
  };
  const started = performance.now();
  const dlog = log.child({ vendorId, eventSeq: seq, queue: WEBHOOK_QUEUE, attempt });
  try {
    const { statusCode } = await postWebhook(hook.webhook_url, body, headers, settings.policy);
    await logDelivery(db, {
      deliveryId,
      vendorId,
      event,
      url: hook.webhook_url,
      attempt,
      outcome: 'delivered',
      statusCode,
      error: null,
      started,
      nextRetryAt: null,
    });
    dlog.info({ statusCode }, 'webhook delivered');
    return 'delivered';
  } catch (error) {
    // A URL refused by policy (private, plain http) stays refused: no more tries.
    const final = error instanceof AppError && !error.retryable;
    const retries = attempt < settings.attempts && !final;
    const nextRetryAt = retries ? new Date(Date.now() + retryDelayMs(settings.backoffMs, attempt)) : null;
    const statusCode = (error as { receiverStatus?: number }).receiverStatus ?? null;
    await logDelivery(db, {
      deliveryId,
      vendorId,
      event,
      url: hook.webhook_url,
      attempt,
      outcome: 'failed',
      statusCode,
      error: (error as Error).message,
      started,
      nextRetryAt,
    }).catch((e: unknown) => dlog.warn({ err: e }, 'could not log a webhook delivery'));
    dlog.warn({ statusCode, err: error, retries }, retries ? 'webhook delivery failed; will retry' : 'webhook delivery failed for the last time');
    throw Object.assign(error as Error, { retryInMs: retries ? retryDelayMs(settings.backoffMs, attempt) : -1 });
  }
}

async function logDelivery(
  db: Db,
  d: {
    deliveryId: string;
    vendorId: string;
    event: JobEventRow;
    url: string;
    attempt: number;
    outcome: 'delivered' | 'failed';
    statusCode: number | null;
    error: string | null;
    started: number;
    nextRetryAt: Date | null;
  },
): Promise<void> {
  await recordDelivery(db, {
    id: d.deliveryId,
    vendor_id: d.vendorId,
    event_seq: Number(d.event.seq),
    event_type: d.event.type,
    url: d.url.slice(0, 2048),
    attempt: d.attempt,
    outcome: d.outcome,
    status_code: d.statusCode,
    error: d.error?.slice(0, 1024) ?? null,
    duration_ms: Math.round(performance.now() - d.started),
    next_retry_at: d.nextRetryAt,
  });
}

/** The body of a webhook: the event with the job (and its result) or the batch's outcome, as they are now. */
export async function webhookEvent(db: Db, event: JobEventRow): Promise<WebhookEvent> {
  const base = { id: Number(event.seq), type: event.type as WebhookEvent['type'], vendorId: event.vendor_id, at: event.created_at.toISOString() };
  if (event.type === 'batch.finished' && event.batch_id) {
    const [batch, outcome] = await Promise.all([
      db.selectFrom('batches').selectAll().where('id', '=', event.batch_id).executeTakeFirst(),
      batchOutcome(db, event.batch_id),
    ]);
    return {
      ...base,
      job: null,
      batch: batch ? { batchId: batch.id, kind: batch.kind, total: batch.total, ...outcome, finishedAt: batch.finished_at?.toISOString() ?? null } : null,
    };
  }
  const job = event.job_id ? await findJob(db, event.job_id) : undefined;
  const results = job && event.type === 'completed' ? await readJobResults(db, [job.id]) : new Map<string, Record<string, unknown>>();
  return {
    ...base,
    batch: null,
    job: job
      ? {
          jobId: job.id,
          batchId: job.batch_id,
          kind: job.kind,
          state: event.type as 'completed' | 'failed' | 'dead',
          projectId: job.project_id,
          recordId: job.record_id,
          attempts: job.attempts,
          error: event.error_code ? { code: event.error_code, message: event.error_message ?? '' } : null,
          result: results.get(job.id) ?? null,
          finishedAt: job.finished_at?.toISOString() ?? null,
        }
      : null,
  };
}
