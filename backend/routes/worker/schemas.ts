import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { BUILTIN_KINDS, type JOB_REGISTRY, type KindSet } from '../../../jobs/kinds.js';
import { ErrorRef } from '../../schemas/common.js';

/** GET /api/worker/health (seed 003 fields, plus what an operator needs to see why). */
const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

const Check = Type.Object({
  ok: Type.Boolean(),
  latencyMs: Nullable(Type.Integer()),
  error: Nullable(Type.String({ description: "the driver's message when unreachable; admin tokens only (null otherwise)" })),
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
  reportedBy: Type.String({ description: 'the worker that reported it: its name (worker-N), or its id for admin tokens' }),
});

const Worker = Type.Object({
  name: Type.String({ description: 'worker-N; the worker id (host:pid by default), host and pid are shown to admin tokens only' }),
  workerId: Type.Optional(Type.String()),
  host: Type.Optional(Type.String()),
  pid: Type.Optional(Type.Integer()),
  startedAt: Type.String(),
  lastBeat: Type.String(),
  ageMs: Type.Integer({ description: 'since the last heartbeat' }),
  queues: Type.Record(Type.String(), Type.Object({ concurrency: Type.Integer(), active: Type.Integer(), paused: Type.Boolean() })),
});

/** Each kind adds its seed 003 size field and its entry under `queues` (jobs/kinds.ts). */
function healthResponse(kinds: KindSet) {
  return Type.Object({
    status: Type.Union([Type.Literal('healthy'), Type.Literal('degraded'), Type.Literal('unhealthy')], {
      description: 'unhealthy (503): Redis or MySQL unreachable, or no live worker; degraded (200): see reasons',
    }),
    ...Object.fromEntries(kinds.list.map((spec) => [spec.healthSizeField, Nullable(Type.Integer())])),
    timestamp: Type.String({ format: 'date-time' }),
    reasons: Type.Array(Type.String()),
    redis: Check,
    mysql: Check,
    queues: Type.Object(Object.fromEntries(kinds.list.map((spec) => [spec.statKey, QueueHealth]))),
    workers: Type.Array(Worker),
    rembg: Type.Array(RembgInstance, { description: 'instances reported by the workers, latest report each' }),
  });
}
export const HealthResponse = healthResponse(BUILTIN_KINDS);

type Spec = (typeof JOB_REGISTRY)[keyof typeof JOB_REGISTRY];
export type HealthResponse = Omit<Static<typeof HealthResponse>, 'queues'> &
  Record<Spec['healthSizeField'], number | null> & { queues: Record<Spec['statKey'], Static<typeof QueueHealth>> };

export function healthSchemaFor(kinds: KindSet) {
  const response = healthResponse(kinds);
  return {
    tags: ['worker'],
    operationId: 'getWorkerHealth',
    summary: 'Worker health: queue sizes, Redis and MySQL reachability, worker heartbeats, rembg instances',
    description:
      'No token needed. With an admin bearer token the rembg URLs and last errors, worker ids, hosts and pids, and the Redis and MySQL errors are included.',
    response: { 200: response, 429: ErrorRef, 500: ErrorRef, 503: Type.Union([response, ErrorRef]) },
  };
}
