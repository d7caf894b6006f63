import { createServer, type Server } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { collectDefaultMetrics, Registry } from 'prom-client';

/**
 * Prometheus metrics shared by the API and the worker. Each process (and
 * each API or worker built inside a test) has its own registry, so two of
 * them in one Node process never share or double-register a series. Every
 * registry carries Node's default metrics, event-loop lag among them
 * (`nodejs_eventloop_lag_seconds`, `…_p99_seconds`), and a `service` label.
 */
export const METRIC_PREFIX = 'iq_';

export function createRegistry(service: 'api' | 'worker'): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });
  return registry;
}

/**
 * Buckets for HTTP and job durations in seconds: API answers take
 * milliseconds, jobs seconds to a minute (the job timeout).
 */
export const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
export const JOB_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120];

/**
 * True when a scrape may read the metrics: always when no token is
 * configured, else only with `Authorization: Bearer <METRICS_TOKEN>`
 * (compared in constant time).
 */
export function metricsAuthorized(token: string, authorization: string | undefined): boolean {
  if (!token) return true;
  const expected = Buffer.from(`Bearer ${token}`);
  const given = Buffer.from(authorization ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export interface MetricsServer {
  /** the port it listens on (useful when 0 was asked for) */
  port: number;
  close(): Promise<void>;
}

/**
 * The worker's own small HTTP server: `GET /metrics` and nothing else
 * (`/healthz` answers 200 so an orchestrator can probe the process).
 */
export interface MetricsServerOptions {
  host: string;
  port: number;
  token: string;
  /** refreshes the gauges read at scrape time (must not throw) */
  beforeScrape?: () => Promise<void>;
}

export async function startMetricsServer(registry: Registry, options: MetricsServerOptions): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || (path !== '/metrics' && path !== '/healthz')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (!metricsAuthorized(options.token, req.headers.authorization)) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('unauthorized\n');
      return;
    }
    (options.beforeScrape?.() ?? Promise.resolve())
      .then(() => registry.metrics())
      .then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (error: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(error as Error).message}\n`),
      );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : options.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
