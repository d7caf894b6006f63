import type { JobState } from './queues.js';

/**
 * Job events on Redis pub/sub, one channel per vendor. Workers publish, the
 * API streams them to that vendor's dashboards (SSE) and nobody else's.
 *
 * The channel is a nudge, not the record: state changes are written to the
 * ledger's event log (`job_events`) in the transaction that makes them, and
 * the API reads them from there, in order, when a message says there is
 * something new. Only `progress` travels on the channel alone (it is not
 * kept), so a lost message delays a state event until the next heartbeat
 * read but never loses it.
 */
export interface JobEvent {
  type: JobState | 'progress';
  jobId: string;
  vendorId: string;
  batchId: string | null;
  kind: string;
  progress?: number;
  error?: { code: string; message: string };
  at: string;
}

/** The API committed new jobs for the vendor: their `queued` events are in the log. */
export interface EventLogNudge {
  type: 'log';
  vendorId: string;
  at: string;
}

export type ChannelMessage = JobEvent | EventLogNudge;

export function eventsChannel(prefix: string, vendorId: string): string {
  return `${prefix}:events:${vendorId}`;
}

/** The pattern of every vendor's channel (for one subscriber per API process). */
export function eventsChannelPattern(prefix: string): string {
  return `${prefix}:events:*`;
}

/** The vendor id in a channel name made by eventsChannel, or null. */
export function vendorOfChannel(prefix: string, channel: string): string | null {
  const head = `${prefix}:events:`;
  return channel.startsWith(head) ? channel.slice(head.length) : null;
}

/**
 * Job ids a vendor cancelled or deleted while they may be running: every
 * worker listens, and the one running the job aborts its attempt. A lost
 * message is covered by the attempt's next progress write, which finds the
 * ledger row no longer active.
 */
export function cancelChannel(prefix: string): string {
  return `${prefix}:cancel`;
}

/**
 * Vendors whose tokens were just revoked (API key rotated, vendor deleted):
 * the message is the vendor id. Every API process drops its cached vendor
 * row, so the next request of an old token is refused by its token version,
 * and closes the vendor's event streams and held long-polls. A lost message
 * is covered by the vendor cache's own expiry (VENDOR_CACHE_MS).
 */
export function revocationChannel(prefix: string): string {
  return `${prefix}:revoked`;
}

/** Tells every API process a vendor's tokens are revoked (see revocationChannel). */
export async function announceRevocation(
  redis: { publish(channel: string, message: string): Promise<unknown> },
  prefix: string,
  vendorId: string,
): Promise<void> {
  await redis.publish(revocationChannel(prefix), vendorId);
}
