import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets the heap grow past what the last full GC left alive
 * before it collects again. By default V8 picks the factor itself, up to 4×
 * on a machine with this much memory, and a worker allocates steadily (every
 * job's Bull, Redis, MySQL and HTTP objects; a few KB of them live long
 * enough to reach the old generation): its RSS then climbs for minutes, from
 * 290 to 400+ MiB over 10,000 jobs, before one collection brings it back.
 * A fixed 30 % keeps it within a few percent of the live heap at the cost of
 * a full collection every ten seconds or so (a few ms each, mostly off the
 * main thread). `bench/worker-memory.ts` measures it.
 *
 * V8 reads this flag each time it recomputes its limits, so setting it at
 * start-up, before the process has done any work, takes effect.
 */
export function boundHeapGrowth(percent: number): void {
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${Math.round(percent)}`);
}
