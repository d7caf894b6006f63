import { env } from '../platform/config.js';

/** Configuration of the remove.bg-compatible route (POST /v1.0/removebg). */
export const RemoveBgSection = {
  SYNC_WAIT_MS: env.int(60_000, 'how long POST /v1.0/removebg waits for its job before answering 202 with the job (GET its Location for the result)', {
    minimum: 0,
    maximum: 600_000,
  }),
};
