import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { ErrorRef } from '../../schemas/common.js';

/** GET /api/worker/health (seed 003 fields, plus what an operator needs to see why). */
const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

const Check = Type.Object({
  ok: Type.Boolean(),
  latencyMs: Nullable(Type.Integer()),
  error: Nullable(Type.String()),
});

const QueueHealth = Type.Object({
  size: Nullable(Type.Integer({ description: 'jobs waiting, delayed, paused or running' })),
  waiting: Nullable(Type.Integer()),
  active: Nullable(Type.Integer()),
  delayed: Nullable(Type.Integer()),
  isPaused: Nullable(Type.Boolean()),
  workers: Type.Integer({ description: 'live workers serving this queue' }),
  concurrency: Type.Integer({ description: 'jobs the live workers run at once' }),
});

const RembgInstance = Type.Object({
  name: Type.String({ description: 'rembg-N; the URL is shown to admin tokens only' }),
  url: Type.Optional(Type.String()),
  healthy: Type.Boolean(),
  circuit: Type.String(),
  inFlight: Type.Integer(),
  latencyMs: Nullable(Type.Number()),
  lastError: Type.Optional(Nullable(Type.String())),
  reportedBy: Type.String(),
});

const Worker = Type.Object({
  workerId: Type.String(),
  host: Type.Optional(Type.String()),
  pid: Type.Optional(Type.Integer()),
  startedAt: Type.String(),
  lastBeat: Type.String(),
  ageMs: Type.Integer({ description: 'since the last heartbeat' }),
  queues: Type.Record(Type.String(), Type.Object({ concurrency: Type.Integer(), active: Type.Integer(), paused: Type.Boolean() })),
});

export const HealthResponse = Type.Object({
  status: Type.Union([Type.Literal('healthy'), Type.Literal('degraded'), Type.Literal('unhealthy')], {
    description: 'unhealthy (503): Redis or MySQL unreachable, or no live worker; degraded (200): see reasons',
  }),
  bgRemovalQueueSize: Nullable(Type.Integer()),
  faceCropQueueSize: Nullable(Type.Integer()),
  imageProcessingQueueSize: Nullable(Type.Integer()),
  timestamp: Type.String({ format: 'date-time' }),
  reasons: Type.Array(Type.String()),
  redis: Check,
  mysql: Check,
  queues: Type.Object({ backgroundRemoval: QueueHealth, faceCrop: QueueHealth, imageProcessing: QueueHealth }),
  workers: Type.Array(Worker),
  rembg: Type.Array(RembgInstance, { description: 'instances reported by the workers, latest report each' }),
});
export type HealthResponse = Static<typeof HealthResponse>;

export const healthSchema = {
  tags: ['worker'],
  summary: 'Worker health: queue sizes, Redis and MySQL reachability, worker heartbeats, rembg instances',
  description: 'No token needed. With an admin bearer token the rembg URLs and last errors are included.',
  response: { 200: HealthResponse, 429: ErrorRef, 500: ErrorRef, 503: Type.Union([HealthResponse, ErrorRef]) },
};
