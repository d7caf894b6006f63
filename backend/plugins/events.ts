import fp from 'fastify-plugin';
import { createRedis } from '../../platform/redis.js';
import { eventsChannel, vendorOfChannel, type ChannelMessage, type EventLogNudge } from '../../jobs/events.js';

type Listener = (message: ChannelMessage) => void;

export interface EventHub {
  /** Calls `listener` with every message on the vendor's channel until the returned function is called. */
  listen(vendorId: string, listener: Listener): Promise<() => void>;
  /** Streams still open for a vendor in this process. */
  streams(vendorId: string): number;
  /** Tells the vendor's streams (in every API process) that its event log has news. Best effort: streams also re-read on their heartbeat. */
  nudge(vendorId: string): void;
  /** Registers an open stream; `end` is called when the app closes. Returns the unregister function. */
  track(vendorId: string, end: () => void): () => void;
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
 * One Redis subscriber connection per API process, shared by every event
 * stream: a vendor's channel is subscribed while at least one of its streams
 * is open. ioredis subscribes again by itself after a reconnect.
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
    const open = new Map<string, Set<() => void>>();

    subscriber.on('message', (channel: string, text: string) => {
      const vendorId = vendorOfChannel(opts.prefix, channel);
      const set = vendorId ? listeners.get(vendorId) : undefined;
      if (!set) return;
      let message: ChannelMessage;
      try {
        message = JSON.parse(text) as ChannelMessage;
      } catch {
        return;
      }
      // A message is only ever delivered to the vendor whose channel it came on.
      if (message.vendorId !== vendorId) return;
      for (const listener of set) listener(message);
    });

    let connecting: Promise<void> | null = null;
    const connect = () => (connecting ??= subscriber.connect().catch((error: unknown) => app.log.warn({ err: error }, 'event subscriber cannot connect yet')));

    const hub: EventHub = {
      async listen(vendorId, listener) {
        void connect();
        let set = listeners.get(vendorId);
        const first = !set;
        if (!set) listeners.set(vendorId, (set = new Set()));
        set.add(listener);
        if (first) {
          const subscribed = subscriber.subscribe(eventsChannel(opts.prefix, vendorId)).catch(() => undefined);
          await Promise.race([subscribed, new Promise((resolve) => setTimeout(resolve, SUBSCRIBE_WAIT_MS).unref())]);
        }
        return () => {
          const current = listeners.get(vendorId);
          if (!current) return;
          current.delete(listener);
          if (current.size === 0) {
            listeners.delete(vendorId);
            subscriber.unsubscribe(eventsChannel(opts.prefix, vendorId)).catch(() => undefined);
          }
        };
      },
      nudge(vendorId) {
        const message: EventLogNudge = { type: 'log', vendorId, at: new Date().toISOString() };
        app.redis.publish(eventsChannel(opts.prefix, vendorId), JSON.stringify(message)).catch(() => undefined);
      },
      streams: (vendorId) => open.get(vendorId)?.size ?? 0,
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
    // Streams never end by themselves: close them so the server can stop.
    app.addHook('preClose', async () => {
      for (const set of [...open.values()]) for (const end of [...set]) end();
    });
    app.addHook('onClose', async () => {
      // Never connected (no stream was opened) or Redis unreachable: just drop it; QUIT would wait for a connection.
      if (subscriber.status !== 'ready') return subscriber.disconnect();
      await Promise.race([subscriber.quit().catch(() => subscriber.disconnect()), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
      subscriber.disconnect();
    });
  },
  { name: 'events', dependencies: ['redis'] },
);
