import { Type, type Static } from '@sinclair/typebox';
import { ALL_QUEUES } from '../../../jobs/queues.js';
import { withErrors } from '../../schemas/common.js';

/** Request and response bodies of the admin queue routes (/api/admin/queues, /api/admin/dead-letters). */
export const QueueName = Type.Unsafe<(typeof ALL_QUEUES)[number]>({ type: 'string', enum: [...ALL_QUEUES] });

const Security = [{ bearerAuth: [] }];
const DateTime = Type.String({ format: 'date-time' });
const NullableDateTime = Type.Union([DateTime, Type.Null()]);

export const QueueParams = Type.Object({ queue: QueueName });

export const QueueOverview = Type.Object({
  name: QueueName,
  paused: Type.Boolean({ description: 'paused for every worker (POST …/pause)' }),
  counts: Type.Object({
    waiting: Type.Integer(),
    active: Type.Integer(),
    delayed: Type.Integer({ description: 'waiting for their retry backoff' }),
    completed: Type.Integer({ description: 'still kept in Redis (bounded; the ledger keeps all)' }),
    failed: Type.Integer({ description: 'still kept in Redis (bounded; the ledger keeps all)' }),
    paused: Type.Integer({ description: 'waiting while the queue is paused' }),
  }),
  deadLetters: Type.Integer({ description: 'dead jobs waiting for an operator' }),
});

export const QueuesResponse = Type.Object({ queues: Type.Array(QueueOverview) });
export const PauseResponse = Type.Object({ queue: QueueName, paused: Type.Boolean() });

export const AttemptRecord = Type.Object({
  attempt: Type.Integer(),
  workerId: Type.String(),
  startedAt: DateTime,
  finishedAt: NullableDateTime,
  outcome: Type.String(),
  errorCode: Type.Union([Type.String(), Type.Null()]),
  errorMessage: Type.Union([Type.String(), Type.Null()]),
});

export const DeadLetterItem = Type.Object({
  jobId: Type.String(),
  queue: Type.String(),
  kind: Type.String(),
  vendorId: Type.String(),
  batchId: Type.Union([Type.String(), Type.Null()]),
  projectId: Type.String(),
  recordId: Type.String(),
  deadAt: DateTime,
  createdAt: DateTime,
  attempts: Type.Integer(),
  maxAttempts: Type.Integer(),
  error: Type.Union([Type.Object({ code: Type.String(), message: Type.String() }), Type.Null()]),
  payload: Type.Record(Type.String(), Type.Unknown(), { description: 'what the Bull job carried: ids, source, options' }),
  attemptHistory: Type.Array(AttemptRecord, { description: 'every attempt, with its error' }),
});
export type DeadLetterItem = Static<typeof DeadLetterItem>;

export const DeadLetterQuery = Type.Object({
  queue: Type.Optional(QueueName),
  vendorId: Type.Optional(Type.String({ maxLength: 64 })),
  limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
  cursor: Type.Optional(Type.String({ maxLength: 64, description: 'nextCursor of the previous page' })),
});

export const DeadLetterFilterQuery = Type.Object({
  queue: Type.Optional(QueueName),
  vendorId: Type.Optional(Type.String({ maxLength: 64 })),
});

export const DeadLetterPage = Type.Object({ items: Type.Array(DeadLetterItem), nextCursor: Type.Union([Type.String(), Type.Null()]) });
export const JobIdParams = Type.Object({ jobId: Type.String({ minLength: 1, maxLength: 64 }) });

export const RetriedResponse = Type.Object({
  jobId: Type.String(),
  state: Type.Literal('queued'),
  attempts: Type.Integer({ description: 'attempts made so far (numbering goes on; history is kept)' }),
  maxAttempts: Type.Integer(),
  inRedis: Type.Boolean({ description: 'false when Redis could not be reached; the worker reconciler queues it shortly' }),
});
export const RetriedAllResponse = Type.Object({ retried: Type.Integer(), jobIds: Type.Array(Type.String()) });
export const PurgedResponse = Type.Object({ purged: Type.Integer() });

const tags = ['admin'];

export const listQueuesSchema = {
  tags,
  operationId: 'listQueues',
  summary: 'Queues: counts, paused state, dead letters',
  security: Security,
  response: withErrors({ 200: QueuesResponse }, 403),
};
export const pauseQueueSchema = {
  tags,
  operationId: 'pauseQueue',
  summary: 'Pause a queue for every worker (jobs keep being accepted and wait)',
  security: Security,
  params: QueueParams,
  response: withErrors({ 200: PauseResponse }, 403),
};
export const resumeQueueSchema = {
  tags,
  operationId: 'resumeQueue',
  summary: 'Resume a paused queue',
  security: Security,
  params: QueueParams,
  response: withErrors({ 200: PauseResponse }, 403),
};
export const listDeadLettersSchema = {
  tags,
  operationId: 'listDeadLetters',
  summary: 'Dead letters: jobs out of attempts, with payload and every attempt error',
  security: Security,
  querystring: DeadLetterQuery,
  response: withErrors({ 200: DeadLetterPage }, 403),
};
export const getDeadLetterSchema = {
  tags,
  operationId: 'getDeadLetter',
  summary: 'One dead letter',
  security: Security,
  params: JobIdParams,
  response: withErrors({ 200: DeadLetterItem }, 403, 404),
};
export const retryDeadLetterSchema = {
  tags,
  operationId: 'retryDeadLetter',
  summary: 'Re-queue one dead job under the same id with a fresh budget of attempts',
  security: Security,
  params: JobIdParams,
  response: withErrors({ 202: RetriedResponse }, 403, 404),
};
export const retryAllDeadLettersSchema = {
  tags,
  operationId: 'retryDeadLetters',
  summary: 'Re-queue every dead letter (of a queue / vendor)',
  security: Security,
  querystring: DeadLetterFilterQuery,
  response: withErrors({ 202: RetriedAllResponse }, 403),
};
export const purgeDeadLetterSchema = {
  tags,
  operationId: 'purgeDeadLetter',
  summary: 'Drop one dead letter (the job stays dead in the ledger)',
  security: Security,
  params: JobIdParams,
  response: withErrors({ 200: PurgedResponse }, 403, 404),
};
export const purgeDeadLettersSchema = {
  tags,
  operationId: 'purgeDeadLetters',
  summary: 'Drop every dead letter (of a queue / vendor); the jobs stay dead in the ledger',
  security: Security,
  querystring: DeadLetterFilterQuery,
  response: withErrors({ 200: PurgedResponse }, 403),
};
