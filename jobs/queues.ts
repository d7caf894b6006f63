/**
 * The three work queues and the job kinds that travel on them. The API and the
 * worker agree on these names; the kind is what the ledger stores.
 */
export const JOB_KINDS = ['remove-bg', 'face-crop', 'process'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

export const QUEUE_NAMES = {
  'remove-bg': 'background-removal',
  'face-crop': 'face-crop',
  process: 'image-processing',
} as const satisfies Record<JobKind, string>;

export type QueueName = (typeof QUEUE_NAMES)[JobKind];

export const ALL_QUEUES: readonly QueueName[] = Object.values(QUEUE_NAMES);

/** Keys used in queue-stats responses, as in seed 003. */
export const QUEUE_STAT_KEYS = {
  'background-removal': 'backgroundRemoval',
  'face-crop': 'faceCrop',
  'image-processing': 'imageProcessing',
} as const satisfies Record<QueueName, string>;

export function kindOfQueue(queue: QueueName): JobKind {
  const entry = Object.entries(QUEUE_NAMES).find(([, name]) => name === queue);
  if (!entry) throw new Error(`unknown queue ${queue}`);
  return entry[0] as JobKind;
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
