import { createHmac, timingSafeEqual } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { JOB_KINDS } from './queues.js';

/**
 * Webhooks: the contract between the worker that delivers them and the
 * vendor's receiver (and the SDK's verifyWebhook). A delivery is a POST of
 * one WebhookEvent as JSON, signed with the vendor's secret:
 *
 *   X-ImageQueue-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
 *
 * The timestamp is inside the signed text, so a captured delivery cannot be
 * replayed later than the receiver's tolerance (5 minutes by default).
 */
export const WEBHOOK_QUEUE = 'webhooks';
export const SIGNATURE_HEADER = 'x-imagequeue-signature';
export const EVENT_HEADER = 'x-imagequeue-event';
export const DELIVERY_HEADER = 'x-imagequeue-delivery';
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** What a webhook Bull job carries: the event's key in the ledger's event log, nothing else. */
export interface WebhookPayload {
  vendorId: string;
  seq: number;
  /** times a worker put the delivery back because its vendor had every slot it may hold (not tries) */
  bounces?: number;
}

export const WEBHOOK_EVENT_TYPES = ['completed', 'failed', 'dead', 'batch.finished'] as const;

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);

export const WebhookJob = Type.Object(
  {
    jobId: Type.String(),
    batchId: Nullable(Type.String()),
    kind: Type.Unsafe<(typeof JOB_KINDS)[number]>({ type: 'string', enum: [...JOB_KINDS] }),
    state: Type.Unsafe<'completed' | 'failed' | 'dead'>({ type: 'string', enum: ['completed', 'failed', 'dead'] }),
    projectId: Type.String(),
    recordId: Type.String(),
    attempts: Type.Integer(),
    error: Nullable(Type.Object({ code: Type.String(), message: Type.String() })),
    result: Nullable(Type.Record(Type.String(), Type.Unknown(), { description: 'the job result, as GET /job/:jobId returns it' })),
    finishedAt: Nullable(Type.String({ format: 'date-time' })),
  },
  { title: 'WebhookJob' },
);

export const WebhookBatch = Type.Object(
  {
    batchId: Type.String(),
    kind: Type.Unsafe<(typeof JOB_KINDS)[number]>({ type: 'string', enum: [...JOB_KINDS] }),
    total: Type.Integer(),
    completed: Type.Integer(),
    failed: Type.Integer(),
    dead: Type.Integer(),
    finishedAt: Nullable(Type.String({ format: 'date-time' })),
  },
  { title: 'WebhookBatch' },
);

export const WebhookEvent = Type.Object(
  {
    id: Type.Integer({ description: 'the event number, as on the event stream; a receiver can de-duplicate by it' }),
    type: Type.Unsafe<(typeof WEBHOOK_EVENT_TYPES)[number]>({ type: 'string', enum: [...WEBHOOK_EVENT_TYPES] }),
    vendorId: Type.String(),
    at: Type.String({ format: 'date-time', description: 'when the change was written to the ledger' }),
    job: Nullable(WebhookJob),
    batch: Nullable(WebhookBatch),
  },
  { $id: 'WebhookEvent', title: 'WebhookEvent' },
);
export type WebhookEvent = Static<typeof WebhookEvent>;

export function signatureHeader(secret: string, body: string, timestampSeconds: number): string {
  return `t=${timestampSeconds},v1=${hmacHex(secret, `${timestampSeconds}.${body}`)}`;
}

/**
 * Whether `header` is a valid signature of `body` with `secret`, made within
 * `toleranceSeconds` of `nowSeconds`. (The SDK carries its own copy of this,
 * on Web Crypto, so it has no Node dependency.)
 */
export function verifySignature(secret: string, body: string, header: string, nowSeconds: number, toleranceSeconds = DEFAULT_TOLERANCE_SECONDS): boolean {
  const parts = new Map<string, string[]>();
  for (const item of header.split(',')) {
    const [k, v] = item.split('=', 2).map((s) => s.trim());
    if (k && v) parts.set(k, [...(parts.get(k) ?? []), v]);
  }
  const t = Number(parts.get('t')?.[0]);
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > toleranceSeconds) return false;
  const expected = Buffer.from(hmacHex(secret, `${t}.${body}`), 'hex');
  return (parts.get('v1') ?? []).some((sig) => {
    const given = Buffer.from(sig, 'hex');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}

function hmacHex(secret: string, text: string): string {
  return createHmac('sha256', secret).update(text).digest('hex');
}

/**
 * Bull's exponential backoff: after n failed tries the next waits
 * backoffMs × (2^n − 1), so the last of `attempts` tries comes
 * backoffMs × (2^attempts − attempts − 1) after the first: 13 tries from
 * 10.5 s is about 23.9 hours (the defaults).
 */
export function retryDelayMs(backoffMs: number, attemptsMade: number): number {
  return Math.round((2 ** attemptsMade - 1) * backoffMs);
}

export function lastRetryAfterMs(backoffMs: number, attempts: number): number {
  return (2 ** attempts - attempts - 1) * backoffMs;
}
