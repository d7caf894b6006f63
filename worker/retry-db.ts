import { setTimeout as sleep } from 'node:timers/promises';
import { isTransientDbError } from '../db/errors.js';
import { AppError } from '../jobs/errors.js';

/**
 * Retries a ledger write while MySQL is unreachable, up to `budgetMs`, so a
 * short database outage does not turn finished work into a failed attempt.
 * Writes passed here must be safe to repeat (they are conditional upserts).
 */
export async function retryDb<T>(write: () => Promise<T>, budgetMs: number, onRetry?: (error: unknown, delayMs: number) => void): Promise<T> {
  const deadline = Date.now() + budgetMs;
  let delay = 200;
  for (;;) {
    try {
      return await write();
    } catch (error) {
      if (!isTransientDbError(error)) throw error;
      if (Date.now() + delay > deadline) {
        throw new AppError('DATABASE_UNAVAILABLE', `MySQL unavailable: ${(error as Error).message}`, { cause: error });
      }
      onRetry?.(error, delay);
      await sleep(delay);
      delay = Math.min(delay * 2, 5000);
    }
  }
}
