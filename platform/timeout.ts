/**
 * Bounds the wait for a promise. Without `orElse` the result rejects with a
 * TimeoutError when `ms` pass first; with it, the wait ends with that value
 * instead (for waits whose outcome does not matter, such as a close that may
 * hang while Redis is away). The work itself is not cancelled: pass it a
 * signal of its own where it can stop. The timer never holds the process open.
 */
export class TimeoutError extends Error {
  constructor(
    readonly ms: number,
    what?: string,
  ) {
    super(`${what ? `${what}: ` : ''}no answer within ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

export interface TimeoutOptions<F> {
  /** resolve with this when time runs out, instead of rejecting */
  orElse?: F;
  /** named in the TimeoutError's message */
  what?: string;
}

export function withTimeout<T>(work: Promise<T>, ms: number, options?: { what?: string }): Promise<T>;
export function withTimeout<T, F>(work: Promise<T>, ms: number, options: { orElse: F; what?: string }): Promise<T | F>;
export function withTimeout<T, F>(work: Promise<T>, ms: number, options: TimeoutOptions<F> = {}): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const fallback = 'orElse' in options;
  const timeout = new Promise<F>((resolve, reject) => {
    timer = setTimeout(() => (fallback ? resolve(options.orElse as F) : reject(new TimeoutError(ms, options.what))), ms);
    timer.unref();
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
