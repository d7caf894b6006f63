import { ConfigError } from './config.js';
import type { Logger } from './logger.js';

/**
 * Entry-point glue shared by the API, worker and rembg processes: report a
 * bad configuration in plain words, and on SIGINT/SIGTERM close once, with a
 * deadline, then exit.
 */
export interface Running {
  log: Pick<Logger, 'info' | 'error' | 'warn'>;
  close: () => Promise<void>;
}

export async function runMain(name: string, start: () => Promise<Running>, graceMs = 30_000): Promise<void> {
  let running: Running;
  try {
    running = await start();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`[${name}] ${error.message}\n`);
    } else {
      process.stderr.write(`[${name}] failed to start: ${(error as Error).stack ?? String(error)}\n`);
    }
    process.exit(1);
  }
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    running.log.info({ signal }, `${name} shutting down`);
    const timer = setTimeout(() => {
      running.log.error({ graceMs }, `${name} did not close in time; exiting`);
      process.exit(1);
    }, graceMs);
    timer.unref();
    running
      .close()
      .then(() => process.exit(0))
      .catch((error: unknown) => {
        running.log.error({ err: error }, `${name} failed to close cleanly`);
        process.exit(1);
      });
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
}
