/**
 * imagequeue SDK: a typed client for the imagequeue API, for Node 20+ and
 * browsers. ESM, no dependencies: it needs only `fetch` (and Web Crypto for
 * verifyWebhook). Types come from the API's own route schemas (types.ts is
 * generated from them).
 *
 *   const iq = new ImageQueueClient({ baseUrl: 'https://iq.example.com', apiKey: process.env.IQ_KEY });
 *   const { jobId } = await iq.queueProcessing({ recordId: 'r1', projectId: 'p1', photoUrl, operations: [{ op: 'resize', width: 800 }] });
 *   const job = await iq.pollJobUntilComplete(jobId, 60_000);
 *
 * The client exchanges its API key for a token and renews it before it
 * expires (and once more on a 401); on 429 it waits for `Retry-After` and
 * tries again, up to `maxRateLimitRetries` times.
 */
import type {
  BatchResponse,
  BulkFaceCropRequest,
  BulkProcessRequest,
  BulkQueuedResponse,
  BulkRemoveBgRequest,
  ErrorResponse,
  FaceCropRequest,
  HealthResponse,
  JobEvent,
  JobListQuery,
  JobListResponse,
  JobStatusResponse,
  ProcessRequest,
  ProgressEvent,
  QueuedResponse,
  QueueStatsResponse,
  ReadyEvent,
  RemoveBgRequest,
  TokenResponse,
  WebhookDeliveriesResponse,
  WebhookEvent,
  WebhookSecretResponse,
  WebhookSettings,
} from './types.js';

export type * from './types.js';

export interface ClientOptions {
  /** the API's origin, e.g. https://iq.example.com (no /api) */
  baseUrl: string;
  /** exchanged for short-lived tokens, renewed as needed */
  apiKey?: string;
  /** a token obtained elsewhere (not renewed) */
  token?: string;
  /** called for a token before the first request and again after a 401: a browser's short-lived token from your own backend */
  getToken?: () => string | Promise<string>;
  /** how many times a 503 (after its Retry-After) or a network error is retried (default 3); POSTs carry an Idempotency-Key so a retry never queues twice */
  maxUnavailableRetries?: number;
  /** a fetch implementation (default: globalThis.fetch; undici's fetch works) */
  fetch?: typeof fetch;
  /** how many times a 429 is waited out and retried (default 3) */
  maxRateLimitRetries?: number;
  /** the longest Retry-After the client will wait by itself, in ms (default 60 s); longer ones throw RateLimitedError */
  maxRetryAfterMs?: number;
}

export interface RequestOptions {
  signal?: AbortSignal;
  /** Idempotency-Key: the same key and body within 24 h return the first answer */
  idempotencyKey?: string;
}

export type UploadKind = 'remove-bg' | 'face-crop' | 'process';

export interface UploadFile {
  /** the photo's bytes */
  data: Blob | Uint8Array | ArrayBuffer;
  filename?: string;
  recordId: string;
}

export interface UploadFields {
  projectId: string;
  /** process: the ordered operations */
  operations?: ProcessRequest['operations'];
  /** face-crop: passport or idcard */
  mode?: FaceCropRequest['mode'];
  /** remove-bg / face-crop options */
  options?: Record<string, unknown>;
}

export interface PollOptions {
  signal?: AbortSignal;
  /** first wait between polls (default 500 ms); it grows 1.5× per poll up to maxIntervalMs */
  intervalMs?: number;
  maxIntervalMs?: number;
  /** hold each request on the server until the job changes (default true; falls back to polling when the server does not) */
  longPoll?: boolean;
}

/** The longest a long-poll asks the server to hold a request. */
const LONG_POLL_S = 30;

export interface EventsOptions {
  /** resume after this event id (from a previous stream's JobEvent.id) */
  lastEventId?: number | string;
  signal?: AbortSignal;
  /** reconnect after a dropped stream (default true), resuming from the last event received */
  reconnect?: boolean;
}

/** What `events()` yields: `ready` once per connection, job/batch events with an id, and live progress. */
export type StreamEvent = { type: 'ready'; data: ReadyEvent } | { type: 'progress'; data: ProgressEvent } | { type: JobEvent['type']; data: JobEvent };

/** Any answer of the API that is not a success. */
export class ImageQueueError extends Error {
  readonly status: number;
  readonly code: string;
  readonly body: ErrorResponse | null;
  constructor(status: number, body: ErrorResponse | null, fallback: string) {
    super(body?.message ?? fallback);
    this.name = 'ImageQueueError';
    this.status = status;
    this.code = body?.code ?? `HTTP_${status}`;
    this.body = body;
  }
}

/** 429 after the client's retries (or a Retry-After longer than it will wait). */
export class RateLimitedError extends ImageQueueError {
  readonly retryAfterMs: number;
  constructor(body: ErrorResponse | null, retryAfterMs: number) {
    super(429, body, 'rate limited');
    this.name = 'RateLimitedError';
    this.retryAfterMs = retryAfterMs;
  }
}

/** The job ended failed or dead; `job` is its final status, `code` its error code. */
export class JobFailedError extends Error {
  readonly job: JobStatusResponse;
  readonly code: string;
  constructor(job: JobStatusResponse) {
    super(`job ${job.id} ${job.state}: ${job.error?.message ?? 'no error message'}`);
    this.name = 'JobFailedError';
    this.job = job;
    this.code = job.error?.code ?? 'UNKNOWN';
  }
}

/** pollJobUntilComplete ran out of time; `job` is the last status seen. */
export class PollTimeoutError extends Error {
  readonly job: JobStatusResponse | null;
  constructor(jobId: string, timeoutMs: number, job: JobStatusResponse | null) {
    super(`job ${jobId} did not finish within ${timeoutMs} ms (last state: ${job?.state ?? 'unknown'})`);
    this.name = 'PollTimeoutError';
    this.job = job;
  }
}

/** Renew a token this long before it expires. */
const RENEW_MARGIN_MS = 30_000;

export class ImageQueueClient {
  private readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;
  private readonly maxRetries: number;
  private readonly maxRetryAfterMs: number;
  private token: string | null;
  private renewAt = Infinity;
  private renewing: Promise<string> | null = null;

  constructor(private readonly options: ClientOptions) {
    if (!options.apiKey && !options.token && !options.getToken) throw new TypeError('ImageQueueClient needs an apiKey, a token or getToken');
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.maxRetries = options.maxRateLimitRetries ?? 3;
    this.maxRetryAfterMs = options.maxRetryAfterMs ?? 60_000;
    this.token = options.token ?? null;
  }

  // Enqueue ---------------------------------------------------------------

  queueBackgroundRemoval(body: RemoveBgRequest, options?: RequestOptions): Promise<QueuedResponse> {
    return this.post('/api/image-queue/remove-bg-queue', body, options);
  }

  queueBulkBackgroundRemoval(body: BulkRemoveBgRequest, options?: RequestOptions): Promise<BulkQueuedResponse> {
    return this.post('/api/image-queue/bulk-remove-bg', body, options);
  }

  queueFaceCrop(body: FaceCropRequest, options?: RequestOptions): Promise<QueuedResponse> {
    return this.post('/api/image-queue/crop-face-queue', body, options);
  }

  queueBulkFaceCrop(body: BulkFaceCropRequest, options?: RequestOptions): Promise<BulkQueuedResponse> {
    return this.post('/api/image-queue/bulk-crop-face', body, options);
  }

  queueProcessing(body: ProcessRequest, options?: RequestOptions): Promise<QueuedResponse> {
    return this.post('/api/image-queue/process-queue', body, options);
  }

  queueBulkProcessing(body: BulkProcessRequest, options?: RequestOptions): Promise<BulkQueuedResponse> {
    return this.post('/api/image-queue/bulk-process', body, options);
  }

  /**
   * Uploads photos instead of URLs (multipart/form-data): one file queues one
   * job (QueuedResponse), several queue a batch (BulkQueuedResponse).
   */
  upload(kind: UploadKind, files: UploadFile, fields: UploadFields, options?: RequestOptions): Promise<QueuedResponse>;
  upload(kind: UploadKind, files: UploadFile[], fields: UploadFields, options?: RequestOptions): Promise<BulkQueuedResponse>;
  upload(kind: UploadKind, files: UploadFile | UploadFile[], fields: UploadFields, options?: RequestOptions): Promise<QueuedResponse | BulkQueuedResponse> {
    const bulk = Array.isArray(files);
    const list = bulk ? files : [files];
    const path = UPLOAD_PATHS[kind][bulk ? 1 : 0];
    // A FormData cannot be sent twice once consumed by some fetch implementations: build it per try.
    const form = () => {
      const data = new FormData();
      data.append('projectId', fields.projectId);
      if (fields.operations !== undefined) data.append('operations', JSON.stringify(fields.operations));
      if (fields.mode !== undefined) data.append('mode', fields.mode);
      if (fields.options !== undefined) data.append('options', JSON.stringify(fields.options));
      if (bulk) for (const f of list) data.append('recordIds', f.recordId);
      else data.append('recordId', (list[0] as UploadFile).recordId);
      list.forEach((f, i) => data.append(bulk ? 'photos' : 'photo', toBlob(f.data), f.filename ?? `photo-${i}`));
      return data;
    };
    return this.request('POST', path, { form, ...options });
  }

  // Status ----------------------------------------------------------------

  getJob(jobId: string, options?: RequestOptions): Promise<JobStatusResponse> {
    return this.request('GET', `/api/image-queue/job/${encodeURIComponent(jobId)}`, options);
  }

  listJobs(query: Partial<JobListQuery> = {}, options?: RequestOptions): Promise<JobListResponse> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (Array.isArray(value)) for (const v of value) params.append(key, String(v));
      else if (value !== undefined) params.set(key, String(value));
    }
    const qs = params.toString();
    return this.request('GET', `/api/image-queue/jobs${qs ? `?${qs}` : ''}`, options);
  }

  getBatch(batchId: string, options?: RequestOptions): Promise<BatchResponse> {
    return this.request('GET', `/api/image-queue/batch/${encodeURIComponent(batchId)}`, options);
  }

  getQueueStats(options?: RequestOptions): Promise<QueueStatsResponse> {
    return this.request('GET', '/api/image-queue/queue-stats', options);
  }

  /** Health answers 503 with a body when unhealthy: that body is returned, not thrown. */
  getWorkerHealth(options?: RequestOptions): Promise<HealthResponse> {
    return this.request('GET', '/api/worker/health', { ...options, acceptStatus: [503] });
  }

  /**
   * Waits for the job to end: resolves with its status when completed,
   * rejects with JobFailedError when failed or dead, PollTimeoutError after
   * `timeoutMs`, or the signal's reason when aborted. It long-polls
   * (`GET /job/:id?wait=N`, answered as soon as the state changes), and falls
   * back to interval polling, backing off from `intervalMs` to
   * `maxIntervalMs`, when the server does not hold the request (an older
   * server refusing `wait`, or one at its cap of waiting requests) or when
   * `longPoll: false`.
   */
  async pollJobUntilComplete(jobId: string, timeoutMs = 120_000, options: PollOptions = {}): Promise<JobStatusResponse> {
    const deadline = Date.now() + timeoutMs;
    let interval = options.intervalMs ?? 500;
    const maxInterval = options.maxIntervalMs ?? 5000;
    let longPoll = options.longPoll ?? true;
    let previous: string | null = null;
    const signal = options.signal ? { signal: options.signal } : undefined;
    for (;;) {
      options.signal?.throwIfAborted();
      const waitS = longPoll ? Math.min(LONG_POLL_S, Math.floor((deadline - Date.now()) / 1000)) : 0;
      const asked = Date.now();
      let last: JobStatusResponse;
      try {
        last =
          waitS >= 1 ? await this.request('GET', `/api/image-queue/job/${encodeURIComponent(jobId)}?wait=${waitS}`, signal) : await this.getJob(jobId, signal);
      } catch (error) {
        if (waitS >= 1 && error instanceof ImageQueueError && error.status === 400) {
          longPoll = false;
          continue;
        }
        throw error;
      }
      if (last.state === 'completed') return last;
      if (last.state === 'failed' || last.state === 'dead') throw new JobFailedError(last);
      const left = deadline - Date.now();
      if (left <= 0) throw new PollTimeoutError(jobId, timeoutMs, last);
      const moved = last.state !== previous;
      previous = last.state;
      // A request the server held (or that came back with news) is followed at once; one it did not hold waits its interval.
      if (waitS >= 1 && (moved || Date.now() - asked >= 1000)) continue;
      await sleep(Math.min(interval, left), options.signal);
      interval = Math.min(maxInterval, Math.round(interval * 1.5));
    }
  }

  /**
   * The vendor's live events (server-sent events) as an async iterator.
   * Dropped connections are resumed from the last event received (with a
   * fresh token), so nothing is missed; `break` or the signal ends it.
   */
  async *events(options: EventsOptions = {}): AsyncGenerator<StreamEvent, void, undefined> {
    let lastEventId = options.lastEventId === undefined ? null : String(options.lastEventId);
    const reconnect = options.reconnect ?? true;
    let failures = 0;
    for (;;) {
      options.signal?.throwIfAborted();
      const controller = new AbortController();
      const onAbort = () => controller.abort(options.signal?.reason);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        const response = await this.send('GET', '/api/image-queue/events', {
          signal: controller.signal,
          headers: { accept: 'text/event-stream', ...(lastEventId !== null ? { 'last-event-id': lastEventId } : {}) },
        });
        if (!response.body) throw new ImageQueueError(response.status, null, 'event stream has no body');
        failures = 0;
        for await (const message of parseSse(response.body)) {
          if (message.id !== null) lastEventId = message.id;
          const data = JSON.parse(message.data) as unknown;
          yield { type: message.event, data } as StreamEvent;
        }
      } catch (error) {
        if (options.signal?.aborted) throw options.signal.reason;
        if (!reconnect || (error instanceof ImageQueueError && error.status !== 503)) throw error;
        failures++;
      } finally {
        options.signal?.removeEventListener('abort', onAbort);
        controller.abort();
      }
      if (!reconnect) return;
      await sleep(Math.min(30_000, 500 * 2 ** Math.min(failures, 6)), options.signal);
    }
  }

  // Webhooks --------------------------------------------------------------

  /** Sets the webhook URL; the answer carries the new signing secret (shown once). */
  setWebhook(webhookUrl: string, options?: RequestOptions): Promise<WebhookSecretResponse> {
    return this.request('PUT', '/api/webhooks', { json: { webhookUrl }, ...options });
  }

  getWebhook(options?: RequestOptions): Promise<WebhookSettings> {
    return this.request('GET', '/api/webhooks', options);
  }

  async deleteWebhook(options?: RequestOptions): Promise<void> {
    await this.request('DELETE', '/api/webhooks', options);
  }

  listWebhookDeliveries(query: { cursor?: string; limit?: number } = {}, options?: RequestOptions): Promise<WebhookDeliveriesResponse> {
    const params = new URLSearchParams();
    if (query.cursor) params.set('cursor', query.cursor);
    if (query.limit) params.set('limit', String(query.limit));
    const qs = params.toString();
    return this.request('GET', `/api/webhooks/deliveries${qs ? `?${qs}` : ''}`, options);
  }

  // Plumbing --------------------------------------------------------------

  private post<T>(path: string, body: unknown, options?: RequestOptions): Promise<T> {
    return this.request('POST', path, { json: body, ...options });
  }

  private async request<T>(
    method: string,
    path: string,
    options: RequestOptions & { json?: unknown; form?: () => FormData; acceptStatus?: number[] } = {},
  ): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (options.idempotencyKey) headers['idempotency-key'] = options.idempotencyKey;
    const response = await this.send(method, path, {
      headers,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.json !== undefined ? { json: options.json } : {}),
      ...(options.form ? { form: options.form } : {}),
      ...(options.acceptStatus ? { acceptStatus: options.acceptStatus } : {}),
    });
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  /** One call with token renewal (once on 401) and 429 retries; resolves with a 2xx (or accepted) response, throws otherwise. */
  private async send(
    method: string,
    path: string,
    init: { headers: Record<string, string>; signal?: AbortSignal; json?: unknown; form?: () => FormData; acceptStatus?: number[] },
  ): Promise<Response> {
    let rateLimited = 0;
    let unavailable = 0;
    let renewed = false;
    // A POST may be sent again (503, network error): one key for all its tries, so the API runs it once.
    const idempotency: Record<string, string> = method === 'POST' && !init.headers['idempotency-key'] ? { 'idempotency-key': newIdempotencyKey() } : {};
    const retryUnavailable = async (waitMs: number) => {
      if (unavailable >= (this.options.maxUnavailableRetries ?? 3) || waitMs > this.maxRetryAfterMs) return false;
      unavailable++;
      await sleep(waitMs, init.signal);
      return true;
    };
    for (;;) {
      const token = await this.currentToken(init.signal, renewed);
      const headers: Record<string, string> = { ...init.headers, ...idempotency, authorization: `Bearer ${token}` };
      let body: BodyInit | undefined;
      if (init.json !== undefined) {
        headers['content-type'] = 'application/json';
        body = JSON.stringify(init.json);
      } else if (init.form) {
        body = init.form();
      }
      let response: Response;
      try {
        response = await this.fetchImpl(`${this.baseUrl}${path}`, {
          method,
          headers,
          ...(body !== undefined ? { body } : {}),
          ...(init.signal ? { signal: init.signal } : {}),
        });
      } catch (error) {
        // fetch rejects with a TypeError when the network fails; an abort is the caller's and is not retried.
        if (init.signal?.aborted || !(error instanceof TypeError)) throw error;
        if (await retryUnavailable(500 * 2 ** unavailable)) continue;
        throw error;
      }
      if (response.ok || init.acceptStatus?.includes(response.status)) return response;
      const error = await errorBody(response);
      if (response.status === 503 && (await retryUnavailable(retryAfterMs(response.headers.get('retry-after'))))) continue;
      if (response.status === 401 && (this.options.apiKey || this.options.getToken) && !renewed) {
        renewed = true;
        this.token = null;
        continue;
      }
      if (response.status === 429) {
        const waitMs = retryAfterMs(response.headers.get('retry-after'));
        if (rateLimited >= this.maxRetries || waitMs > this.maxRetryAfterMs) throw new RateLimitedError(error, waitMs);
        rateLimited++;
        await sleep(waitMs, init.signal);
        continue;
      }
      throw new ImageQueueError(response.status, error, `${method} ${path} answered ${response.status}`);
    }
  }

  private async currentToken(signal?: AbortSignal, renewed = false): Promise<string> {
    if (this.options.getToken && !this.options.apiKey) {
      if (this.token && !renewed) return this.token;
      return (this.token = await this.options.getToken());
    }
    if (this.token && Date.now() < this.renewAt) return this.token;
    if (!this.options.apiKey) {
      if (this.token) return this.token;
      throw new ImageQueueError(401, null, 'no token and no API key to get one');
    }
    this.renewing ??= this.fetchToken(signal).finally(() => {
      this.renewing = null;
    });
    return this.renewing;
  }

  private async fetchToken(signal?: AbortSignal): Promise<string> {
    for (let rateLimited = 0; ; rateLimited++) {
      const response = await this.fetchImpl(`${this.baseUrl}/api/auth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ apiKey: this.options.apiKey }),
        ...(signal ? { signal } : {}),
      });
      if (response.ok) {
        const body = (await response.json()) as TokenResponse;
        this.token = body.token;
        // Renewed RENEW_MARGIN_MS before it expires, or halfway through a shorter lifetime.
        const lifetimeMs = body.expiresIn * 1000;
        this.renewAt = Date.now() + lifetimeMs - Math.min(RENEW_MARGIN_MS, lifetimeMs / 2);
        return body.token;
      }
      const error = await errorBody(response);
      if (response.status === 429 && rateLimited < this.maxRetries) {
        const waitMs = retryAfterMs(response.headers.get('retry-after'));
        if (waitMs <= this.maxRetryAfterMs) {
          await sleep(waitMs, signal);
          continue;
        }
      }
      if (response.status === 429) throw new RateLimitedError(error, retryAfterMs(response.headers.get('retry-after')));
      throw new ImageQueueError(response.status, error, `token request answered ${response.status}`);
    }
  }
}

export interface QueueAPIOptions {
  /** the API's origin, e.g. https://iq.example.com */
  baseUrl: string;
  /** a token for the browser, minted by your backend (POST /api/auth/token with your key and a scope); called again after a 401 */
  getToken: () => string | Promise<string>;
  fetch?: typeof fetch;
}

export type FaceCropMode = FaceCropRequest['mode'];

/**
 * Seed 003's `queueAPI` ("Frontend Integration"), for a vendor dashboard in
 * the browser: the same methods with the same positional arguments, over
 * ImageQueueClient (429 and 503 waited out, network errors retried with an
 * Idempotency-Key, a new token from `getToken` after a 401).
 * `pollJobUntilComplete` ends on `completed` (resolves with the job), or
 * `failed` / `dead` (rejects with JobFailedError, so React Query's onError
 * runs).
 */
export interface QueueAPI {
  queueBackgroundRemoval(recordId: string, projectId: string, photoUrl: string, options?: RemoveBgRequest['options']): Promise<QueuedResponse>;
  queueBulkBackgroundRemoval(recordIds: string[], projectId: string, photoUrls: string[], options?: RemoveBgRequest['options']): Promise<BulkQueuedResponse>;
  queueFaceCrop(recordId: string, projectId: string, photoUrl: string, mode?: FaceCropMode): Promise<QueuedResponse>;
  queueBulkFaceCrop(recordIds: string[], projectId: string, photoUrls: string[], mode?: FaceCropMode): Promise<BulkQueuedResponse>;
  /** a photo from the browser (a File or Blob) instead of a URL */
  uploadForBackgroundRemoval(recordId: string, projectId: string, photo: Blob, options?: RemoveBgRequest['options']): Promise<QueuedResponse>;
  getJobStatus(jobId: string): Promise<JobStatusResponse>;
  getQueueStats(): Promise<QueueStatsResponse>;
  getWorkerHealth(): Promise<HealthResponse>;
  pollJobUntilComplete(jobId: string, timeoutMs?: number): Promise<JobStatusResponse>;
  /** the client underneath, for everything else (events, batches, webhooks) */
  client: ImageQueueClient;
}

export function createQueueAPI(options: QueueAPIOptions): QueueAPI {
  const client = new ImageQueueClient({ baseUrl: options.baseUrl, getToken: options.getToken, ...(options.fetch ? { fetch: options.fetch } : {}) });
  return {
    queueBackgroundRemoval: (recordId, projectId, photoUrl, opts) =>
      client.queueBackgroundRemoval({ recordId, projectId, photoUrl, ...(opts ? { options: opts } : {}) }),
    queueBulkBackgroundRemoval: (recordIds, projectId, photoUrls, opts) =>
      client.queueBulkBackgroundRemoval({ recordIds, projectId, photoUrls, ...(opts ? { options: opts } : {}) }),
    queueFaceCrop: (recordId, projectId, photoUrl, mode = 'passport') => client.queueFaceCrop({ recordId, projectId, photoUrl, mode }),
    queueBulkFaceCrop: (recordIds, projectId, photoUrls, mode = 'passport') => client.queueBulkFaceCrop({ recordIds, projectId, photoUrls, mode }),
    uploadForBackgroundRemoval: (recordId, projectId, photo, opts) =>
      client.upload('remove-bg', { data: photo, recordId }, { projectId, ...(opts ? { options: opts } : {}) }),
    getJobStatus: (jobId) => client.getJob(jobId),
    getQueueStats: () => client.getQueueStats(),
    getWorkerHealth: () => client.getWorkerHealth(),
    pollJobUntilComplete: (jobId, timeoutMs = 5 * 60 * 1000) => client.pollJobUntilComplete(jobId, timeoutMs),
    client,
  };
}

const UPLOAD_PATHS: Record<UploadKind, [string, string]> = {
  'remove-bg': ['/api/image-queue/remove-bg-queue', '/api/image-queue/bulk-remove-bg'],
  'face-crop': ['/api/image-queue/crop-face-queue', '/api/image-queue/bulk-crop-face'],
  process: ['/api/image-queue/process-queue', '/api/image-queue/bulk-process'],
};

/**
 * Verifies a webhook delivery: `signatureHeader` is the X-ImageQueue-Signature
 * header (`t=<unix seconds>,v1=<hex>`), `rawBody` the request body exactly as
 * received (before any JSON parsing). True only for a valid HMAC-SHA256 of
 * `<t>.<body>` with `secret`, made within `toleranceSeconds` (default 300) of now.
 */
export async function verifyWebhook(
  secret: string,
  rawBody: string | Uint8Array,
  signatureHeader: string | null | undefined,
  options: { toleranceSeconds?: number; nowSeconds?: number } = {},
): Promise<boolean> {
  if (!signatureHeader) return false;
  const parts = new Map<string, string[]>();
  for (const item of signatureHeader.split(',')) {
    const at = item.indexOf('=');
    if (at > 0) parts.set(item.slice(0, at).trim(), [...(parts.get(item.slice(0, at).trim()) ?? []), item.slice(at + 1).trim()]);
  }
  const t = Number(parts.get('t')?.[0]);
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (!Number.isInteger(t) || Math.abs(now - t) > (options.toleranceSeconds ?? 300)) return false;
  const encoder = new TextEncoder();
  const body = typeof rawBody === 'string' ? encoder.encode(rawBody) : rawBody;
  const signed = new Uint8Array(encoder.encode(`${t}.`).length + body.length);
  signed.set(encoder.encode(`${t}.`));
  signed.set(body, encoder.encode(`${t}.`).length);
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const expected = new Uint8Array(await crypto.subtle.sign('HMAC', key, signed));
  return (parts.get('v1') ?? []).some((hex) => constantTimeEqual(expected, fromHex(hex)));
}

/** Parses a verified webhook body (call verifyWebhook first). */
export function parseWebhook(rawBody: string | Uint8Array): WebhookEvent {
  return JSON.parse(typeof rawBody === 'string' ? rawBody : new TextDecoder().decode(rawBody)) as WebhookEvent;
}

function fromHex(hex: string): Uint8Array {
  if (!/^[0-9a-f]*$/i.test(hex) || hex.length % 2 !== 0) return new Uint8Array(0);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

/** Retry-After in seconds or as an HTTP date; 1 s when absent or unreadable. */
export function retryAfterMs(header: string | null): number {
  if (!header) return 1000;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : 1000;
}

async function errorBody(response: Response): Promise<ErrorResponse | null> {
  try {
    const body = (await response.json()) as ErrorResponse;
    return typeof body?.message === 'string' ? body : null;
  } catch {
    return null;
  }
}

function newIdempotencyKey(): string {
  return globalThis.crypto.randomUUID();
}

function toBlob(data: Blob | Uint8Array | ArrayBuffer): Blob {
  return data instanceof Blob ? data : new Blob([data as BlobPart]);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

interface SseMessage {
  event: string;
  id: string | null;
  data: string;
}

/** Server-sent events from a byte stream (the subset the API sends: event, id, data, comments). */
async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
      let cut: number;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = 'message';
        let id: string | null = null;
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line === '' || line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'event') event = value;
          else if (field === 'id') id = value;
          else if (field === 'data') data.push(value);
        }
        if (data.length > 0) yield { event, id, data: data.join('\n') };
      }
    }
  } finally {
    reader.releaseLock();
    await body.cancel().catch(() => undefined);
  }
}
