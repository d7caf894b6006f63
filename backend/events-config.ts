import { env } from '../platform/config.js';

/** The API's side of live events (issue 10): the SSE stream, status caches and long-polls (issue 20), the admin board. */
export const EventsSection = {
  SSE_HEARTBEAT_MS: env.int(15_000, 'how often an idle event stream sends a comment line (keeps proxies from closing it) and re-reads the event log', {
    minimum: 100,
  }),
  SSE_MAX_STREAMS_PER_VENDOR: env.int(20, 'open event streams one vendor may hold per API process (429 beyond)', { minimum: 1 }),
  JOB_READ_CACHE_MS: env.int(
    2000,
    'how long a job or batch status view is kept in memory; job events drop it at once, so this only bounds changes made without one (0: no cache)',
    { minimum: 0 },
  ),
  JOB_WAITS_MAX: env.int(10_000, 'long-polls (?wait=, Prefer: wait) one API process holds at once; beyond it a wait answers at once', { minimum: 0 }),
  JOB_WAITS_MAX_PER_VENDOR: env.int(1000, 'long-polls one vendor may hold per API process; beyond it its waits answer at once', { minimum: 0 }),
  ADMIN_BOARD_TOKEN: env.string(
    '',
    'bearer token that opens Bull Board at /admin/queues (sent as a header or to its login form, never in the URL); empty: only admin-role JWTs open it',
  ),
  ADMIN_BOARD_SESSION_SECONDS: env.int(900, 'lifetime of the Bull Board session cookie that POST /admin/queues/session hands out', {
    minimum: 30,
    maximum: 86_400,
  }),
};
