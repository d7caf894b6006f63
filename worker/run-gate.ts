/**
 * Who runs at once in one worker process. Jobs run side by side (`shared`)
 * up to their queues' concurrency; a suspect job, one whose earlier run died
 * with its worker (db/repos/jobs.ts, recordDeadRun), runs `alone`: it waits
 * until every other running job of this process has finished, and nothing
 * else starts until it is done. If it kills the worker again, it was alone,
 * so the death is its own; nobody else's attempt is lost with it.
 *
 * A waiting `alone` goes ahead of later `shared` arrivals, so suspects are
 * not starved by a busy queue. Waiters hold their Bull job (its lock is
 * renewed) but have not started an attempt in the ledger.
 */
export type Release = () => void;

export interface RunGate {
  shared(): Promise<Release>;
  alone(): Promise<Release>;
  /** running jobs now, and whether one of them runs alone */
  state(): { running: number; alone: boolean; waiting: number };
}

export function createRunGate(): RunGate {
  let running = 0;
  let aloneRunning = false;
  const waiting: { alone: boolean; admit: () => void }[] = [];

  const canAdmit = (alone: boolean) => (alone ? running === 0 : !aloneRunning);

  function pump() {
    while (waiting.length > 0) {
      const next = waiting[0]!;
      if (!canAdmit(next.alone)) return;
      waiting.shift();
      next.admit();
      if (next.alone) return;
    }
  }

  function enter(alone: boolean): Promise<Release> {
    return new Promise<Release>((resolve) => {
      const admit = () => {
        running++;
        if (alone) aloneRunning = true;
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          running--;
          if (alone) aloneRunning = false;
          pump();
        });
      };
      // First come, first served: nobody overtakes a waiter (an `alone` waiter holds back later `shared` ones).
      if (waiting.length === 0 && canAdmit(alone)) admit();
      else waiting.push({ alone, admit });
    });
  }

  return {
    shared: () => enter(false),
    alone: () => enter(true),
    state: () => ({ running, alone: aloneRunning, waiting: waiting.length }),
  };
}
