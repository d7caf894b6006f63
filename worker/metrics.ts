import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { RembgInstanceState } from '../jobs/heartbeat.js';
import { createRegistry, JOB_BUCKETS, METRIC_PREFIX } from '../platform/metrics.js';

/**
 * The worker process's Prometheus series, served by its own small HTTP
 * server (WORKER_METRICS_PORT): how long jobs take and how they end, per
 * queue; retries and dead letters; heartbeats written; jobs running against
 * concurrency; and each rembg instance of the pool as this worker sees it
 * (health, circuit, calls in flight, last latency), read at scrape time.
 * Every worker reports only its own work: dashboards `sum` over instances.
 */
export type JobOutcome = 'completed' | 'retry' | 'failed' | 'dead' | 'shutdown' | 'skipped' | 'duplicate' | 'cancelled';

export interface JobMetrics {
  /** one attempt ended; `seconds` from the attempt's start */
  attemptEnded(queue: string, outcome: JobOutcome, seconds: number, code?: string): void;
}

export interface WorkerMetrics extends JobMetrics {
  registry: Registry;
  heartbeat(): void;
  /** sets the gauges read at scrape time */
  refresh(state: { queues: Record<string, { concurrency: number; active: number; paused: boolean }>; rembg: RembgInstanceState[] }): void;
}

export function createWorkerMetrics(queuesServed: readonly string[]): WorkerMetrics {
  const registry = createRegistry('worker');
  const jobDuration = new Histogram({
    name: `${METRIC_PREFIX}job_duration_seconds`,
    help: 'duration of one job attempt, by queue and outcome',
    labelNames: ['queue', 'outcome'] as const,
    buckets: JOB_BUCKETS,
    registers: [registry],
  });
  const jobs = new Counter({
    name: `${METRIC_PREFIX}job_attempts_total`,
    help: 'job attempts by queue and outcome (completed, retry, failed, dead, shutdown, skipped, duplicate)',
    labelNames: ['queue', 'outcome'] as const,
    registers: [registry],
  });
  const retries = new Counter({
    name: `${METRIC_PREFIX}job_retries_total`,
    help: 'failed attempts that were queued for another try, by queue and error code',
    labelNames: ['queue', 'code'] as const,
    registers: [registry],
  });
  const deadLetters = new Counter({
    name: `${METRIC_PREFIX}job_dead_letters_total`,
    help: 'jobs moved to the dead-letter list after their last attempt failed, by queue and error code',
    labelNames: ['queue', 'code'] as const,
    registers: [registry],
  });
  const heartbeats = new Counter({
    name: `${METRIC_PREFIX}worker_heartbeats_total`,
    help: 'heartbeats this worker wrote to Redis',
    registers: [registry],
  });
  const lastHeartbeat = new Gauge({
    name: `${METRIC_PREFIX}worker_last_heartbeat_timestamp_seconds`,
    help: 'Unix time of the last heartbeat this worker wrote',
    registers: [registry],
  });
  const active = new Gauge({
    name: `${METRIC_PREFIX}worker_active_jobs`,
    help: 'jobs this worker runs now, by queue',
    labelNames: ['queue'] as const,
    registers: [registry],
  });
  const concurrency = new Gauge({
    name: `${METRIC_PREFIX}worker_concurrency`,
    help: 'jobs this worker may run at once, by queue (0 while paused)',
    labelNames: ['queue'] as const,
    registers: [registry],
  });
  const rembgUp = new Gauge({
    name: `${METRIC_PREFIX}rembg_instance_up`,
    help: '1 while the pool considers a rembg instance healthy',
    labelNames: ['instance'] as const,
    registers: [registry],
  });
  const rembgCircuit = new Gauge({
    name: `${METRIC_PREFIX}rembg_instance_circuit`,
    help: "1 for the state of each rembg instance's circuit breaker (closed, open, half-open)",
    labelNames: ['instance', 'state'] as const,
    registers: [registry],
  });
  const rembgInFlight = new Gauge({
    name: `${METRIC_PREFIX}rembg_instance_in_flight`,
    help: 'calls this worker has in flight to each rembg instance',
    labelNames: ['instance'] as const,
    registers: [registry],
  });
  const rembgLatency = new Gauge({
    name: `${METRIC_PREFIX}rembg_instance_latency_seconds`,
    help: 'recent latency of calls to each rembg instance (moving average; absent before the first call)',
    labelNames: ['instance'] as const,
    registers: [registry],
  });

  // The series of every served queue exist from the start, so rate() and
  // absence alerts work before the first job.
  for (const queue of queuesServed) {
    for (const outcome of ['completed', 'retry', 'failed', 'dead'] as const) jobs.inc({ queue, outcome }, 0);
  }

  return {
    registry,
    attemptEnded(queue, outcome, seconds, code) {
      jobs.inc({ queue, outcome });
      jobDuration.observe({ queue, outcome }, seconds);
      if (outcome === 'retry') retries.inc({ queue, code: code ?? 'UNKNOWN' });
      if (outcome === 'dead') deadLetters.inc({ queue, code: code ?? 'UNKNOWN' });
    },
    heartbeat() {
      heartbeats.inc();
      lastHeartbeat.set(Date.now() / 1000);
    },
    refresh(state) {
      for (const [queue, q] of Object.entries(state.queues)) {
        active.set({ queue }, q.active);
        concurrency.set({ queue }, q.paused ? 0 : q.concurrency);
      }
      rembgUp.reset();
      rembgCircuit.reset();
      rembgInFlight.reset();
      rembgLatency.reset();
      for (const r of state.rembg) {
        const instance = instanceLabel(r.url);
        rembgUp.set({ instance }, r.healthy ? 1 : 0);
        for (const s of ['closed', 'open', 'half-open'] as const) rembgCircuit.set({ instance, state: s }, r.circuit === s ? 1 : 0);
        rembgInFlight.set({ instance }, r.inFlight);
        if (r.latencyMs !== null) rembgLatency.set({ instance }, r.latencyMs / 1000);
      }
    },
  };
}

/** host:port of an instance URL: never credentials or a path in a label. */
export function instanceLabel(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'invalid-url';
  }
}
