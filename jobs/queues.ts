import { byKind, JOB_KINDS, JOB_REGISTRY, type JobKind, type QueueName, type StatKey } from './kinds.js';

/**
 * Queue names and stats keys by kind, derived from the registry
 * (jobs/kinds.ts); the ledger states; Bull's attempt slack.
 */
export { JOB_KINDS, type JobKind, type QueueName };

export const QUEUE_NAMES = byKind((spec) => spec.queue) as { [K in JobKind]: (typeof JOB_REGISTRY)[K]['queue'] };

export const ALL_QUEUES: readonly QueueName[] = Object.values(QUEUE_NAMES);

/** Keys used in queue-stats and health responses, as in seed 003. */
export const QUEUE_STAT_KEYS = Object.fromEntries(JOB_KINDS.map((kind) => [JOB_REGISTRY[kind].queue, JOB_REGISTRY[kind].statKey])) as Record<
  QueueName,
  StatKey
>;

export function kindOfQueue(queue: QueueName): JobKind {
  const kind = JOB_KINDS.find((k) => JOB_REGISTRY[k].queue === queue);
  if (!kind) throw new Error(`unknown queue ${queue}`);
  return kind;
}

/**
 * Ledger states. `queued` also covers a job waiting for its next attempt;
 * `cancelled` is a job its vendor stopped before it ended.
 */
export const JOB_STATES = ['queued', 'active', 'completed', 'failed', 'dead', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];
export const OPEN_STATES: readonly JobState[] = ['queued', 'active'];
export const FINAL_STATES: readonly JobState[] = ['completed', 'failed', 'dead', 'cancelled'];
/** States a vendor may retry a job from. */
export const RETRYABLE_STATES: readonly JobState[] = ['failed', 'dead', 'cancelled'];

/**
 * The ledger counts a job's attempts and decides when it is dead. Bull is
 * given a few more tries than that, so attempts cut short by a worker
 * shutdown (which the ledger does not count) never exhaust Bull first.
 */
export const BULL_ATTEMPT_SLACK = 5;

export function bullAttempts(maxAttempts: number): number {
  return maxAttempts + BULL_ATTEMPT_SLACK;
}
