/**
 * Bounded concurrency with a short wait queue: at most `concurrency` images
 * in work and `queue` waiting; anything beyond is refused at once (the HTTP
 * layer answers 503 with Retry-After), so an overloaded instance never piles
 * up work it cannot finish in time and callers go to another instance.
 */
export class Busy extends Error {
  constructor(readonly retryAfterS: number) {
    super('this rembg instance is at capacity; retry shortly or use another instance');
    this.name = 'Busy';
  }
}

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

export class Limiter {
  private running = 0;
  private readonly waiting: Waiter[] = [];
  /** moving average of how long a slot is held, for Retry-After */
  private averageMs = 1000;

  constructor(
    readonly concurrency: number,
    readonly queue: number,
  ) {}

  get inFlight(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** A slot; call the returned function to give it back. Throws Busy when work and queue are full. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.running < this.concurrency) return Promise.resolve(this.grant());
    if (this.waiting.length >= this.queue) return Promise.reject(new Busy(this.retryAfterS()));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.waiting.indexOf(waiter);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(signal?.reason);
        },
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  /** Seconds until a slot is likely free for one more caller. */
  retryAfterS(): number {
    return Math.max(1, Math.ceil((this.averageMs * (this.waiting.length + 1)) / this.concurrency / 1000));
  }

  private grant(): () => void {
    this.running++;
    const started = performance.now();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.averageMs = 0.8 * this.averageMs + 0.2 * (performance.now() - started);
      this.running--;
      const next = this.waiting.shift();
      if (next) {
        next.signal?.removeEventListener('abort', next.onAbort);
        next.resolve(this.grant());
      }
    };
  }
}
