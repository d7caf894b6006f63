import { env } from '../platform/config.js';

/** The API's side of live events (issue 10): the SSE stream and the admin board. */
export const EventsSection = {
  SSE_HEARTBEAT_MS: env.int(15_000, 'how often an idle event stream sends a comment line (keeps proxies from closing it) and re-reads the event log', {
    minimum: 100,
  }),
  SSE_MAX_STREAMS_PER_VENDOR: env.int(20, 'open event streams one vendor may hold per API process (429 beyond)', { minimum: 1 }),
  ADMIN_BOARD_TOKEN: env.string('', 'bearer token (or ?token=) that opens Bull Board at /admin/queues; empty: only admin-role JWTs open it'),
};
