import type { Logger } from '../platform/logger.js';

/**
 * A worker is a handful of lifecycle units (readiness, queue runner, stalled
 * handler, reconciler, sweep, retention, webhooks, heartbeat, and the
 * connections under them), each owning its own state, composed in order:
 *
 * - start: in the order given, each awaited (a failure stops the start; close
 *   then closes what started);
 * - close: first every unit's `stop` (synchronous: stop starting new work,
 *   such as clearing a timer or ending a wait), then every unit's `close`, in
 *   close order, each awaited. A unit that never started is closed too, and
 *   must be safe to close; a close that fails is logged and the rest go on.
 */
export interface Unit {
  readonly name: string;
  start?(): Promise<void> | void;
  stop?(): void;
  close?(): Promise<void> | void;
}

export interface Units {
  start(): Promise<void>;
  close(): Promise<void>;
}

export function composeUnits(startOrder: readonly Unit[], closeOrder: readonly Unit[], log: Logger): Units {
  const missing = startOrder.filter((u) => !closeOrder.includes(u)).map((u) => u.name);
  if (missing.length > 0) throw new Error(`units without a place in the close order: ${missing.join(', ')}`);
  return {
    async start() {
      for (const unit of startOrder) await unit.start?.();
    },
    async close() {
      for (const unit of closeOrder) unit.stop?.();
      for (const unit of closeOrder) {
        try {
          await unit.close?.();
        } catch (error) {
          log.warn({ err: error, unit: unit.name }, `closing ${unit.name} failed`);
        }
      }
    },
  };
}
