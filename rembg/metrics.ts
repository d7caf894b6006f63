import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Limiter } from './limiter.js';

/** The rembg service's own Prometheus registry (GET /metrics), apart from the API's and the worker's. */
export interface RembgMetrics {
  registry: Registry;
  requests: Counter<'status'>;
  rejected: Counter;
  requestSeconds: Histogram<'model'>;
  inferenceSeconds: Histogram<'model'>;
}

export function createRembgMetrics(limiter: Limiter, models: () => string[]): RembgMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'rembg_' });
  const buckets = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30];
  const metrics: RembgMetrics = {
    registry,
    requests: new Counter({ name: 'rembg_requests_total', help: 'remove requests answered, by HTTP status', labelNames: ['status'], registers: [registry] }),
    rejected: new Counter({
      name: 'rembg_rejected_total',
      help: 'remove requests refused with 503 because the instance was at capacity',
      registers: [registry],
    }),
    requestSeconds: new Histogram({
      name: 'rembg_request_seconds',
      help: 'time from a slot being granted to the PNG being ready (decode, inference, encode)',
      labelNames: ['model'],
      buckets,
      registers: [registry],
    }),
    inferenceSeconds: new Histogram({
      name: 'rembg_inference_seconds',
      help: 'onnxruntime run time of one image',
      labelNames: ['model'],
      buckets,
      registers: [registry],
    }),
  };
  new Gauge({
    name: 'rembg_in_flight',
    help: 'images being worked on now',
    registers: [registry],
    collect() {
      this.set(limiter.inFlight);
    },
  });
  new Gauge({
    name: 'rembg_waiting',
    help: 'requests waiting for a slot',
    registers: [registry],
    collect() {
      this.set(limiter.queued);
    },
  });
  new Gauge({
    name: 'rembg_capacity',
    help: 'images worked on at once plus requests allowed to wait',
    registers: [registry],
    collect() {
      this.set(limiter.concurrency + limiter.queue);
    },
  });
  new Gauge({
    name: 'rembg_models_loaded',
    help: 'model sessions loaded',
    registers: [registry],
    collect() {
      this.set(models().length);
    },
  });
  return metrics;
}
