import fp from 'fastify-plugin';
import { createRedis } from '../../platform/redis.js';
import { withTimeout } from '../../platform/timeout.js';
import { eventsChannel, eventsChannelPattern, revocationChannel, vendorOfChannel, type ChannelMessage, type EventLogNudge } from '../../jobs/events.js';

type Listener = (message: ChannelMessage) => void;

export interface EventHub {
  /** Calls `listener` with every message on the vendor's channel until the returned function is called. */
  listen(vendorId: string, listener: Listener): Promise<() => void>;
  /** Calls `listener` with every message of every vendor (job caches and long-polls) until the returned function is called. */
  listenAll(listener: Listener): () => void;
  /**
   * True while the subscription is confirmed on a connected subscriber, so no
   * message is being missed: only then may a reader trust "no message yet" to
   * mean "nothing changed".
   */
  readonly live: boolean;
  /** Calls `listener` whenever messages may have been missed (the subscriber lost its connection) and when it is live again. */
  onGap(listener: () => void): () => void;
  /** Connects the subscriber now rather than at the first stream (idempotent, never throws). */
  start(): void;
  /** Streams still open for a vendor in this process. */
  streams(vendorId: string): number;
  /** Tells the vendor's streams (in every API process) that its event log has news. Best effort: streams also re-read on their heartbeat. */
  nudge(vendorId: string): void;
  /** Registers an open stream; `end` is called when the app closes or the vendor's tokens are revoked. Returns the unregister function. */
  track(vendorId: string, end: () => void): () => void;
  /** Calls `listener` with the vendor id whenever a vendor's tokens are revoked (in any process: see jobs/events.ts revocationChannel). */
  onRevoke(listener: (vendorId: string) => void): () => void;
}

declare module 'fastify' {
  interface FastifyInstance {
    eventHub: EventHub;
  }
}

export interface EventsPluginOptions {
  redisUrl: string;
  prefix: string;
}

/** How long a new stream waits for its SUBSCRIBE to be confirmed before going on without it (its heartbeat reads cover the gap). */
const SUBSCRIBE_WAIT_MS = 2000;

/**
 * One Redis subscriber connection per API process and one pattern
 * subscription on it (every vendor's channel), fanned out in memory: to the
 * event streams of the message's vendor, and to whoever listens to all
 * (the job read cache and long-polls). ioredis subscribes again by itself
 * after a reconnect; until that is confirmed the hub is not `live`, and
 * `onGap` listeners hear about both the loss and the recovery.
 */
export default fp<EventsPluginOptions>(
  async (app, opts) => {
    const subscriber = createRedis(opts.redisUrl, {
      connectionName: 'imagequeue-api-events',
      maxRetriesPerRequest: null,
      enableReadyCheck: false,
      lazyConnect: true,
    });
    subscriber.on('error', (error) => app.log.debug({ err: error }, 'event subscriber connection error'));
    const listeners = new Map<string, Set<Listener>>();
    const everyone = new Set<Listener>();
    const gapListeners = new Set<() => void>();
    const revokeListeners = new Set<(vendorId: string) => void>();
    const revoked = revocationChannel(opts.prefix);
    const open = new Map<string, Set<() => void>>();
    const pattern = eventsChannelPattern(opts.prefix);
    let live = false;
    let closing = false;

    const gap = () => {
      for (const listener of [...gapListeners]) listener();
    };
    subscriber.on('pmessage', (_pattern: string, channel: string, text: string) => {
      const vendorId = vendorOfChannel(opts.prefix, channel);
      if (!vendorId) return;
      const set = listeners.get(vendorId);
      if (!set && everyone.size === 0) return;
      let message: ChannelMessage;
      try {
        message = JSON.parse(text) as ChannelMessage;
      } catch {
        return;
      }
      // A message is only ever delivered to the vendor whose channel it came on.
      if (message.vendorId !== vendorId) return;
      for (const listener of everyone) listener(message);
      if (set) for (const listener of set) listener(message);
    });
    // A revocation: the vendor's cached row goes (app.forgetVendor), its streams end, and so do its long-polls (job-status listens).
    subscriber.on('message', (channel: string, vendorId: string) => {
      if (channel !== revoked || vendorId === '') return;
      app.forgetVendor(vendorId);
      for (const end of [...(open.get(vendorId) ?? [])]) end();
      for (const listener of [...revokeListeners]) listener(vendorId);
    });
    subscriber.on('close', () => {
      if (!live) return;
      live = false;
      gap();
    });
    // After a reconnect ioredis re-subscribes on its own; asking again confirms it (PSUBSCRIBE is idempotent).
    subscriber.on('ready', () => {
      if (!closing && subscribing) void confirm();
    });

    let subscribing: Promise<void> | null = null;
    const confirm = async () => {
      try {
        await Promise.all([subscriber.psubscribe(pattern), subscriber.subscribe(revoked)]);
        if (closing || subscriber.status !== 'ready') return;
        live = true;
        gap();
      } catch {
        // not connected yet: the next 'ready' confirms
      }
    };
    const subscribe = () =>
      (subscribing ??= subscriber
        .connect()
        .catch((error: unknown) => app.log.warn({ err: error }, 'event subscriber cannot connect yet'))
        .then(() => (live ? undefined : confirm())));

    const hub: EventHub = {
      async listen(vendorId, listener) {
        let set = listeners.get(vendorId);
        if (!set) listeners.set(vendorId, (set = new Set()));
        set.add(listener);
        if (!live) await withTimeout(subscribe(), SUBSCRIBE_WAIT_MS, { orElse: undefined });
        return () => {
          const current = listeners.get(vendorId);
          if (!current) return;
          current.delete(listener);
          if (current.size === 0) listeners.delete(vendorId);
        };
      },
      listenAll(listener) {
        void subscribe();
        everyone.add(listener);
        return () => everyone.delete(listener);
      },
      get live() {
        return live;
      },
      onGap(listener) {
        gapListeners.add(listener);
        return () => gapListeners.delete(listener);
      },
      start() {
        void subscribe();
      },
      nudge(vendorId) {
        const message: EventLogNudge = { type: 'log', vendorId, at: new Date().toISOString() };
        app.redis.publish(eventsChannel(opts.prefix, vendorId), JSON.stringify(message)).catch(() => undefined);
      },
      streams: (vendorId) => open.get(vendorId)?.size ?? 0,
      onRevoke(listener) {
        revokeListeners.add(listener);
        return () => revokeListeners.delete(listener);
      },
      track(vendorId, end) {
        let set = open.get(vendorId);
        if (!set) open.set(vendorId, (set = new Set()));
        set.add(end);
        return () => {
          set.delete(end);
          if (set.size === 0) open.delete(vendorId);
        };
      },
    };
    app.decorate('eventHub', hub);
    // Messages may have been missed, revocations among them: no cached vendor row is trusted.
    hub.onGap(() => app.forgetVendor(null));
    // Streams never end by themselves: close them so the server can stop.
    app.addHook('preClose', async () => {
      for (const set of [...open.values()]) for (const end of [...set]) end();
    });
    app.addHook('onClose', async () => {
      closing = true;
      live = false;
      // Never connected (no stream was opened) or Redis unreachable: just drop it; QUIT would wait for a connection.
      if (subscriber.status !== 'ready') return subscriber.disconnect();
      await withTimeout(
        subscriber.quit().catch(() => subscriber.disconnect()),
        2000,
        { orElse: undefined },
      );
      subscriber.disconnect();
    });
  },
  { name: 'events', dependencies: ['redis', 'auth'] },
);
