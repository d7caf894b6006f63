import { randomBytes } from 'node:crypto';
import { Agent, request, type Dispatcher } from 'undici';
import { AppError } from '../../jobs/errors.js';
import type { RembgInstanceState } from '../../jobs/heartbeat.js';
import { deadline } from '../../platform/deadline.js';
import type { Logger } from '../../platform/logger.js';
import type { RembgClient, RemoveBackgroundOptions } from './types.js';

/**
 * The worker's load-balanced pool of rembg instances (ours, or stock rembg
 * containers: only rembg's HTTP API is used). Each call goes to the instance
 * with the fewest calls in flight (ties: the faster one, then turns); a call
 * that fails on a connection error, a 5xx or a timeout is tried again on
 * another instance within the same job attempt. Every instance has a
 * circuit: consecutive failures (or a failed /health probe) open it, the
 * instance gets no calls while open, and after REMBG_OPEN_MS, or as soon as a
 * probe succeeds, one trial call decides whether it closes again. When no
 * instance can take a call for REMBG_WAIT_MS, the job attempt fails with the
 * retryable REMBG_UNAVAILABLE and Bull tries again later.
 */
export interface PoolSettings {
  urls: string[];
  defaultModel: string;
  timeoutMs: number;
  healthIntervalMs: number;
  failureThreshold: number;
  openMs: number;
  waitMs: number;
}

interface Instance {
  /** without credentials: what logs and the heartbeat show */
  url: string;
  /** Basic credentials from the configured URL (an instance behind an authenticating proxy), sent as a header */
  headers: Record<string, string>;
  circuit: RembgInstanceState['circuit'];
  healthy: boolean;
  inFlight: number;
  failures: number;
  openedAt: number;
  lastError: string | null;
  /** moving average of successful call durations */
  latencyMs: number | null;
  /** calls sent, for tests and the bench */
  calls: number;
  /** answered at least once: a failure before that is an instance still starting, not news */
  seen: boolean;
}

/** Why one instance could not answer; whether another may. */
class InstanceFailure extends Error {
  constructor(
    message: string,
    readonly countsAgainst: boolean,
  ) {
    super(message);
  }
}

export function parseRembgUrls(raw: string): string[] {
  return raw
    .split(',')
    .map((u) => u.trim().replace(/\/+$/, ''))
    .filter(Boolean)
    .map((u) => {
      const url = new URL(u);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`REMBG_URLS: ${u} is not an http(s) URL`);
      return url.toString().replace(/\/+$/, '');
    });
}

export class RembgPool implements RembgClient {
  readonly name = 'rembg-pool';
  private readonly instances: Instance[];
  private readonly agent: Dispatcher;
  private readonly timer: NodeJS.Timeout;
  private readonly changed = new Set<() => void>();
  private turn = 0;
  private closed = false;

  constructor(
    private readonly settings: PoolSettings,
    private readonly log: Logger,
  ) {
    this.instances = settings.urls.map((configured) => ({
      ...withoutCredentials(configured),
      circuit: 'closed',
      healthy: true,
      inFlight: 0,
      failures: 0,
      openedAt: 0,
      lastError: null,
      latencyMs: null,
      calls: 0,
      seen: false,
    }));
    this.agent = new Agent({ keepAliveTimeout: 4_000, connections: 32, connect: { timeout: Math.min(5_000, settings.timeoutMs) } });
    this.timer = setInterval(() => void this.probeAll(), settings.healthIntervalMs);
    this.timer.unref();
    void this.probeAll();
  }

  async removeBackground(image: Buffer, options: RemoveBackgroundOptions): Promise<Buffer> {
    const model = options.model ?? this.settings.defaultModel;
    const deadline = Date.now() + this.settings.waitMs;
    const tried = new Set<Instance>();
    const errors: string[] = [];
    for (;;) {
      options.signal.throwIfAborted();
      if (this.instances.length === 0) throw new AppError('REMBG_UNAVAILABLE', 'no rembg instances are configured (REMBG_URLS)');
      const instance = this.pick(tried);
      if (instance) {
        tried.add(instance);
        try {
          return await this.call(instance, image, model, options);
        } catch (error) {
          if (!(error instanceof InstanceFailure)) throw error;
          errors.push(`${instance.url}: ${error.message}`);
          continue;
        }
      }
      // Every instance that could take the call had it this round: wait for
      // a call to end or a circuit to change, then start a new round.
      if (Date.now() >= deadline) {
        const why = errors.length ? `: ${errors.slice(-3).join('; ')}` : '';
        throw new AppError('REMBG_UNAVAILABLE', `no rembg instance could take the call (${this.summary()})${why}`);
      }
      await this.waitForChange(Math.min(250, deadline - Date.now()), options.signal);
      tried.clear();
    }
  }

  rembgInstances(): RembgInstanceState[] {
    this.refreshCircuits();
    return this.instances.map((i) => ({
      url: i.url,
      circuit: i.circuit,
      healthy: i.healthy,
      inFlight: i.inFlight,
      lastError: i.lastError,
      latencyMs: i.latencyMs === null ? null : Math.round(i.latencyMs),
    }));
  }

  /** Calls sent to each instance so far (by URL). */
  callCounts(): Record<string, number> {
    return Object.fromEntries(this.instances.map((i) => [i.url, i.calls]));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.agent.close();
  }

  /** The instance with the fewest calls in flight among those whose circuit lets a call through. */
  private pick(exclude: Set<Instance>): Instance | null {
    this.refreshCircuits();
    const open = this.instances.filter((i) => !exclude.has(i) && (i.circuit === 'closed' || (i.circuit === 'half-open' && i.inFlight === 0)));
    if (open.length === 0) return null;
    const n = this.instances.length;
    const start = this.turn++ % n;
    let best: Instance | null = null;
    for (let k = 0; k < n; k++) {
      const candidate = this.instances[(start + k) % n]!;
      if (!open.includes(candidate)) continue;
      if (!best || candidate.inFlight < best.inFlight || (candidate.inFlight === best.inFlight && faster(candidate, best))) best = candidate;
    }
    return best;
  }

  private async call(instance: Instance, image: Buffer, model: string, options: RemoveBackgroundOptions): Promise<Buffer> {
    const form = removeForm(image, { model, ...(options.onlyMask ? { om: 'true' } : {}) });
    const limit = deadline(this.settings.timeoutMs, options.signal);
    const { signal } = limit;
    instance.inFlight++;
    instance.calls++;
    const started = performance.now();
    try {
      const response = await request(`${instance.url}/api/remove`, {
        headers: { ...instance.headers, 'content-type': form.contentType },
        method: 'POST',
        body: form.body,
        signal,
        dispatcher: this.agent,
        headersTimeout: this.settings.timeoutMs,
        bodyTimeout: this.settings.timeoutMs,
      });
      const body = Buffer.from(await response.body.arrayBuffer());
      if (response.statusCode === 200) {
        this.succeeded(instance, performance.now() - started);
        return body;
      }
      const detail = detailOf(body) ?? `HTTP ${response.statusCode}`;
      if (response.statusCode === 503) {
        // Full, not broken: the instance said so itself. Another takes the call.
        throw new InstanceFailure(`busy: ${detail}`, false);
      }
      if (response.statusCode >= 500) throw new InstanceFailure(`HTTP ${response.statusCode}: ${detail}`, true);
      this.succeeded(instance, performance.now() - started);
      throw requestError(response.statusCode, detail);
    } catch (error) {
      if (options.signal.aborted) throw options.signal.reason ?? error;
      if (error instanceof AppError) throw error;
      const failure =
        error instanceof InstanceFailure
          ? error
          : new InstanceFailure(limit.timedOut ? `no answer within ${this.settings.timeoutMs} ms` : describe(error), true);
      if (failure.countsAgainst) this.failed(instance, failure.message);
      throw failure;
    } finally {
      limit.release();
      instance.inFlight--;
      this.notify();
    }
  }

  private succeeded(instance: Instance, ms: number): void {
    instance.seen = true;
    instance.failures = 0;
    instance.healthy = true;
    if (instance.circuit !== 'closed') this.log.info({ rembg: instance.url }, 'rembg instance is back; circuit closed');
    instance.circuit = 'closed';
    instance.latencyMs = instance.latencyMs === null ? ms : 0.8 * instance.latencyMs + 0.2 * ms;
  }

  private failed(instance: Instance, message: string, immediately = false): void {
    instance.failures++;
    instance.lastError = message;
    if (instance.circuit === 'open') return;
    if (immediately || instance.circuit === 'half-open' || instance.failures >= this.settings.failureThreshold) {
      // closed → open is news; a trial that fails again (half-open → open) is not
      if (instance.circuit === 'closed') {
        if (instance.seen) this.log.warn({ rembg: instance.url, err: message }, 'rembg instance failing; circuit open');
        else this.log.info({ rembg: instance.url, err: message }, 'rembg instance not reachable yet; circuit open');
      }
      instance.circuit = 'open';
      instance.healthy = false;
      instance.openedAt = Date.now();
    }
  }

  /** An open circuit becomes half-open once it has waited long enough. */
  private refreshCircuits(): void {
    const now = Date.now();
    for (const i of this.instances) if (i.circuit === 'open' && now - i.openedAt >= this.settings.openMs) i.circuit = 'half-open';
  }

  private async probeAll(): Promise<void> {
    if (this.closed) return;
    await Promise.all(this.instances.map((i) => this.probe(i)));
  }

  /**
   * GET /health. Ours answers 200 when its models are loaded; a stock rembg
   * has no /health and answers 404, which still shows it is up.
   */
  private async probe(instance: Instance): Promise<void> {
    try {
      const response = await request(`${instance.url}/health`, {
        headers: instance.headers,
        dispatcher: this.agent,
        signal: AbortSignal.timeout(Math.min(this.settings.timeoutMs, Math.max(1_000, this.settings.healthIntervalMs))),
      });
      await response.body.dump();
      if (response.statusCode !== 200 && response.statusCode !== 404) throw new Error(`/health answered ${response.statusCode}`);
      if (this.closed) return;
      instance.seen = true;
      instance.healthy = true;
      if (instance.circuit === 'open') {
        instance.circuit = 'half-open';
        this.notify();
      }
    } catch (error) {
      if (this.closed) return;
      instance.healthy = false;
      this.failed(instance, `health probe: ${describe(error)}`, true);
    }
  }

  private summary(): string {
    return this.instances.map((i) => `${i.url} ${i.circuit}${i.inFlight ? ` ${i.inFlight} in flight` : ''}`).join(', ');
  }

  private notify(): void {
    for (const wake of this.changed) wake();
    this.changed.clear();
  }

  /** Resolves when a call ends or a circuit changes, or after `ms`. */
  private waitForChange(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', aborted);
        this.changed.delete(done);
        resolve();
      };
      const aborted = () => {
        done();
        reject(signal.reason);
      };
      const timer = setTimeout(done, Math.max(1, ms));
      signal.addEventListener('abort', aborted, { once: true });
      this.changed.add(done);
    });
  }
}

/**
 * rembg's form (the image as `file`, then text fields) in one buffer with a
 * length. undici's FormData copies the image into a Blob and streams it in
 * small chunks, which cost the worker more CPU per call than all else it
 * does for a background removal. Field values are model names and flags
 * (no line breaks); the boundary is random, as every form encoder's is.
 */
export function removeForm(image: Buffer, fields: Record<string, string>): { body: Buffer; contentType: string } {
  const boundary = `----imagequeue${randomBytes(16).toString('hex')}`;
  let head = '';
  for (const [name, value] of Object.entries(fields)) {
    if (/[\r\n"]/.test(name + value)) throw new Error(`form field ${name} holds a line break or quote`);
    head += `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  }
  head += `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="image"\r\nContent-Type: application/octet-stream\r\n\r\n`;
  const body = Buffer.concat([Buffer.from(head, 'latin1'), image, Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1')]);
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}

function withoutCredentials(configured: string): { url: string; headers: Record<string, string> } {
  const url = new URL(configured);
  if (!url.username && !url.password) return { url: configured, headers: {} };
  const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
  url.username = '';
  url.password = '';
  return { url: url.toString().replace(/\/+$/, ''), headers: { authorization: `Basic ${Buffer.from(credentials).toString('base64')}` } };
}

function faster(a: Instance, b: Instance): boolean {
  return a.latencyMs !== null && b.latencyMs !== null && a.latencyMs < b.latencyMs * 0.8;
}

function detailOf(body: Buffer): string | null {
  try {
    const detail = (JSON.parse(body.toString('utf8')) as { detail?: unknown }).detail;
    if (typeof detail === 'string') return detail.slice(0, 300);
    return detail === undefined ? null : JSON.stringify(detail).slice(0, 300);
  } catch {
    return null;
  }
}

/** A 4xx from rembg: the image (or the request) is at fault, and no other instance will do better. */
function requestError(status: number, detail: string): AppError {
  if (status === 413) return new AppError('TOO_MANY_PIXELS', `background removal refused the image: ${detail}`);
  if (status === 415) return new AppError('UNSUPPORTED_FORMAT', `background removal refused the image: ${detail}`);
  if (status === 400 && /image|decode|file/i.test(detail)) return new AppError('BAD_IMAGE', `background removal could not read the image: ${detail}`);
  return new AppError('REMBG_FAILED', `background removal refused the call (HTTP ${status}): ${detail}`, { retryable: false });
}

function describe(error: unknown): string {
  const e = error as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  return e.cause?.code ?? e.code ?? e.message ?? String(error);
}
