import { Type, type Static } from '@sinclair/typebox';
import { withErrors } from '../../schemas/common.js';
import { JobError, JobKindSchema } from './schemas.js';

/**
 * The event stream (GET /api/image-queue/events, text/event-stream) and the
 * webhook bodies share these shapes; the SDK's types are generated from them.
 */
export const EVENT_TYPES = ['queued', 'active', 'completed', 'failed', 'dead', 'cancelled', 'batch.finished'] as const;
export const EventTypeSchema = Type.Unsafe<(typeof EVENT_TYPES)[number]>({ type: 'string', enum: [...EVENT_TYPES] });

export const JobEventMessage = Type.Object(
  {
    id: Type.Integer({ description: 'the event number (per vendor, increasing); also the SSE `id:` line, to resume with Last-Event-ID' }),
    type: EventTypeSchema,
    jobId: Type.Union([Type.String(), Type.Null()], { description: 'null for batch events' }),
    batchId: Type.Union([Type.String(), Type.Null()]),
    kind: JobKindSchema,
    error: Type.Union([JobError, Type.Null()]),
    at: Type.String({ format: 'date-time', description: 'when the change was written to the ledger' }),
  },
  { $id: 'JobEventMessage', title: 'JobEvent' },
);
export type JobEventMessage = Static<typeof JobEventMessage>;

export const ProgressMessage = Type.Object(
  {
    type: Type.Literal('progress'),
    jobId: Type.String(),
    batchId: Type.Union([Type.String(), Type.Null()]),
    kind: JobKindSchema,
    progress: Type.Integer({ minimum: 0, maximum: 100 }),
    at: Type.String({ format: 'date-time' }),
  },
  { title: 'ProgressEvent', description: 'live only: not kept, not replayed on resume, no `id:` line' },
);
export type ProgressMessage = Static<typeof ProgressMessage>;

export const ReadyMessage = Type.Object(
  {
    lastEventId: Type.Integer({ description: 'events after this one follow on this stream' }),
    resumed: Type.Boolean({ description: 'whether the stream resumed from Last-Event-ID' }),
    reset: Type.Boolean({ description: 'the requested events were pruned: reload the state (GET /jobs) instead of trusting the replay' }),
  },
  { title: 'ReadyEvent' },
);
export type ReadyMessage = Static<typeof ReadyMessage>;

export const EventsQuery = Type.Object(
  {
    lastEventId: Type.Optional(
      Type.String({ pattern: '^[0-9]{1,18}$', description: 'as the Last-Event-ID header, for clients that cannot set headers; the header wins' }),
    ),
  },
  { additionalProperties: false },
);

export const eventsSchema = {
  operationId: 'streamEvents',
  summary: "Stream the vendor's job and batch events (server-sent events)",
  description: [
    'A `text/event-stream`. Each state change is one event named by its type (`queued`, `active`, `completed`, `failed`, `dead`, `batch.finished`)',
    'with an `id:` line and a JobEvent as data; `progress` events carry no id. The first event, `ready`, says where the stream starts.',
    'Reconnect with `Last-Event-ID` (or `?lastEventId=`) to receive every event after that id from the ledger, then live ones.',
    'A comment line (`: heartbeat`) is sent every SSE_HEARTBEAT_MS. The stream ends when the token expires: reconnect with a new one.',
  ].join(' '),
  tags: ['image-queue'],
  security: [{ bearerAuth: [] }],
  querystring: EventsQuery,
  headers: Type.Object({ 'last-event-id': Type.Optional(Type.String({ pattern: '^[0-9]{0,18}$' })) }),
  response: {
    ...withErrors({}, 429),
    // Written by the route itself (it hijacks the reply), never serialised by Fastify.
    200: {
      description:
        'A stream of server-sent events: `ready` first, then one event per state change (data: JobEvent), `progress` (data: ProgressEvent) and heartbeats',
      content: {
        'text/event-stream': {
          schema: Type.String({
            description:
              'SSE messages (`id:`, `event:`, one `data:` line of JSON) separated by blank lines; the data schemas are ReadyEvent, JobEvent and ProgressEvent',
            example:
              'retry: 2000\n\nid: 41\nevent: ready\ndata: {"lastEventId":41,"resumed":false,"reset":false}\n\nid: 42\nevent: completed\ndata: {"id":42,"type":"completed","jobId":"01JQ7ZK3W1R4C5T6V7X8Y9Z0AB","batchId":null,"kind":"remove-bg","error":null,"at":"2026-01-01T12:00:00.000Z"}\n\n',
          }),
        },
      },
    },
  },
};
