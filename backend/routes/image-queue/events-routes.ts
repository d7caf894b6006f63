import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { eventsAfter, eventsAfterWithProject, firstEventSeq, lastEventSeq } from '../../../db/repos/events.js';
import type { JobEventRow } from '../../../db/schema.js';
import { AppError } from '../../../jobs/errors.js';
import type { ChannelMessage } from '../../../jobs/events.js';
import type { JobKind } from '../../../jobs/queues.js';
import { eventsSchema, type JobEventMessage, type ProgressMessage, type ReadyMessage } from './events-schemas.js';
import { projectOf, vendorOf } from '../../plugins/auth.js';

/**
 * GET /events: the vendor's job and batch events as server-sent events.
 *
 * State events come from the ledger's event log, never from the channel: a
 * stream remembers the last event number it sent and reads every later one,
 * in order, whenever the vendor's channel says something happened (and at
 * each heartbeat, in case a message was lost). Because a vendor's events
 * commit in number order (db/repos/events.ts), "everything after n" is
 * complete, so resuming with Last-Event-ID is the same read as staying
 * connected. Progress, which the ledger does not keep, is passed straight
 * from the channel.
 */
export interface EventsRouteOptions {
  heartbeatMs: number;
  maxStreamsPerVendor: number;
}

const PAGE = 500;
/** A client that reads this far behind is dropped; it resumes with Last-Event-ID. */
const MAX_BUFFERED_BYTES = 1024 * 1024;

const routes: FastifyPluginAsyncTypebox<EventsRouteOptions> = async (app, opts) => {
  app.get('/events', { schema: eventsSchema, config: { auth: 'vendor', scopes: ['jobs:read'], rateLimitTier: 'polling' } as const }, async (request, reply) => {
    const vendorId = vendorOf(request).id;
    const resumeFrom = parseLastEventId(request.headers['last-event-id'], request.query.lastEventId);
    if (app.eventHub.streams(vendorId) >= opts.maxStreamsPerVendor) {
      throw new AppError('RATE_LIMITED', `at most ${opts.maxStreamsPerVendor} open event streams per vendor; close one first`);
    }
    const stream = new EventStream(app, request, reply.raw, vendorId, projectOf(request), opts.heartbeatMs);
    reply.hijack();
    await stream.start(resumeFrom);
  });
};

export default routes;

function parseLastEventId(header: string | undefined, query: string | undefined): number | null {
  const raw = header !== undefined && header !== '' ? header : query;
  if (raw === undefined || raw === '') return null;
  const n = Number(raw);
  if (!/^[0-9]{1,18}$/.test(raw) || !Number.isSafeInteger(n)) throw new AppError('BAD_REQUEST', 'Last-Event-ID must be an event id from this stream');
  return n;
}

class EventStream {
  private last = 0;
  private reading = false;
  private readAgain = false;
  private closed = false;
  /** set once the start position is known: messages before it are dropped (the first read after it covers them) */
  private started = false;
  private readonly cleanups: (() => void)[] = [];
  /** for a project-restricted stream: jobs of its project seen in the log, whose progress it passes on (others' it drops) */
  private readonly ownJobs = new Set<string>();

  constructor(
    private readonly app: FastifyInstance,
    private readonly request: FastifyRequest,
    private readonly res: ServerResponse,
    private readonly vendorId: string,
    /** a project-restricted token's project: only its jobs' events are sent */
    private readonly projectId: string | null,
    private readonly heartbeatMs: number,
  ) {}

  async start(resumeFrom: number | null): Promise<void> {
    const res = this.res;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    this.request.raw.on('close', () => this.close());
    res.on('error', () => this.close());
    this.cleanups.push(this.app.eventHub.track(this.vendorId, () => this.close()));
    // Subscribe first, then read where to start: nothing committed in between is missed.
    const unlisten = await this.app.eventHub.listen(this.vendorId, (message) => this.onMessage(message));
    this.cleanups.push(unlisten);
    if (this.closed) return this.close();

    let reset = false;
    try {
      if (resumeFrom === null) {
        this.last = await lastEventSeq(this.app.db, this.vendorId);
      } else {
        this.last = resumeFrom;
        const first = await firstEventSeq(this.app.db, this.vendorId);
        const newest = await lastEventSeq(this.app.db, this.vendorId);
        // Pruned past the client's position, or an id this vendor never had.
        reset = (first !== null && resumeFrom < first - 1) || resumeFrom > newest;
        if (resumeFrom > newest) this.last = newest;
      }
    } catch (error) {
      this.request.log.warn({ err: error }, 'event stream could not read the event log');
      return this.close();
    }
    const ready: ReadyMessage = { lastEventId: this.last, resumed: resumeFrom !== null, reset };
    this.send(`id: ${this.last}\nevent: ready\ndata: ${JSON.stringify(ready)}\n\n`);
    this.started = true;
    await this.readLog();

    const heartbeat = setInterval(() => {
      this.send(': heartbeat\n\n');
      void this.readLog();
    }, this.heartbeatMs);
    this.cleanups.push(() => clearInterval(heartbeat));
    // The token's lifetime bounds the stream's: a deleted vendor or a revoked plan stops streaming.
    const expiresAt = this.request.caller?.expiresAt;
    if (expiresAt) {
      const expiry = setTimeout(() => this.close(), Math.min(2 ** 31 - 1, Math.max(0, expiresAt - Date.now())));
      this.cleanups.push(() => clearTimeout(expiry));
    }
  }

  private onMessage(message: ChannelMessage): void {
    if (!this.started) return;
    if (message.type === 'progress') {
      if (this.projectId !== null && !this.ownJobs.has(message.jobId)) return;
      const progress: ProgressMessage = {
        type: 'progress',
        jobId: message.jobId,
        batchId: message.batchId,
        kind: message.kind as JobKind,
        progress: message.progress ?? 0,
        at: message.at,
      };
      this.send(`event: progress\ndata: ${JSON.stringify(progress)}\n\n`);
      return;
    }
    void this.readLog();
  }

  /** Sends every logged event after the last one sent; calls that arrive during a read make it read once more. */
  private async readLog(): Promise<void> {
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    this.reading = true;
    try {
      do {
        this.readAgain = false;
        for (;;) {
          if (this.closed) return;
          const rows =
            this.projectId === null
              ? await eventsAfter(this.app.db, this.vendorId, this.last, PAGE)
              : await eventsAfterWithProject(this.app.db, this.vendorId, this.last, PAGE);
          for (const row of rows) {
            this.last = Number(row.seq);
            if (this.projectId !== null && !this.ownProject(row as JobEventRow & { project_id: string | null })) continue;
            this.send(`id: ${row.seq}\nevent: ${row.type}\ndata: ${JSON.stringify(present(row))}\n\n`);
          }
          if (rows.length < PAGE) break;
        }
      } while (this.readAgain);
    } catch (error) {
      this.request.log.debug({ err: error }, 'event stream read failed; the next heartbeat reads again');
    } finally {
      this.reading = false;
    }
  }

  /** Whether a log row is of this stream's project; its job's progress is passed on from then (bounded: the oldest is forgotten). */
  private ownProject(row: JobEventRow & { project_id: string | null }): boolean {
    if (row.project_id !== this.projectId) return false;
    if (row.job_id) {
      if (this.ownJobs.size >= 10_000) this.ownJobs.delete(this.ownJobs.values().next().value as string);
      this.ownJobs.add(row.job_id);
    }
    return true;
  }

  private send(text: string): void {
    if (this.closed) return;
    this.res.write(text);
    if (this.res.writableLength > MAX_BUFFERED_BYTES) {
      this.request.log.info({ vendorId: this.vendorId }, 'event stream client is too far behind; closing it (it resumes with Last-Event-ID)');
      this.close();
    }
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const cleanup of this.cleanups.splice(0)) cleanup();
    if (!this.res.writableEnded) this.res.end();
  }
}

export function present(row: JobEventRow): JobEventMessage {
  return {
    id: Number(row.seq),
    type: row.type,
    jobId: row.job_id,
    batchId: row.batch_id,
    kind: row.kind,
    error: row.error_code ? { code: row.error_code, message: row.error_message ?? '' } : null,
    at: row.created_at.toISOString(),
  };
}
