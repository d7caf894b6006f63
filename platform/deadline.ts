/**
 * A signal that aborts when `ms` have passed or `parent` aborts, whichever
 * comes first, and that lets go of its timer and of the parent the moment the
 * work is done (`release()`).
 *
 * `AbortSignal.any([parent, AbortSignal.timeout(ms)])` means the same but
 * holds on much longer: each timeout keeps its timer and signal alive for
 * the whole `ms` (60 s per job attempt, whether the job took 20 ms or not),
 * and every combined signal stays registered on a long-lived parent such as
 * the worker's shutdown signal (nodejs/node#55351). At a hundred jobs a
 * second that is thousands of live timers and signals, and a worker whose
 * memory grows with its job rate.
 */
export interface Deadline {
  readonly signal: AbortSignal;
  /** true once the time ran out (and not because the parent aborted) */
  readonly timedOut: boolean;
  /** stops the timer and unhooks the parent; the signal no longer aborts */
  release(): void;
}

export function deadline(ms: number, parent?: AbortSignal): Deadline {
  const controller = new AbortController();
  let timedOut = false;
  const onParentAbort = () => {
    clearTimeout(timer);
    controller.abort(parent?.reason);
  };
  const timer = setTimeout(() => {
    timedOut = true;
    parent?.removeEventListener('abort', onParentAbort);
    controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
  }, ms);
  timer.unref();
  if (parent?.aborted) onParentAbort();
  else parent?.addEventListener('abort', onParentAbort, { once: true });
  return {
    signal: controller.signal,
    get timedOut() {
      return timedOut;
    },
    release() {
      clearTimeout(timer);
      parent?.removeEventListener('abort', onParentAbort);
    },
  };
}
