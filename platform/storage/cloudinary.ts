import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { v2 as cloudinary, type UploadApiOptions, type UploadApiResponse } from 'cloudinary';
import { request } from 'undici';
import { AppError } from '../../jobs/errors.js';
import { deadline } from '../deadline.js';
import { assertSafeKey, type Storage, type StoredObject } from './storage.js';

/**
 * Cloudinary through its official SDK. Credentials come from CLOUDINARY_URL
 * (`cloudinary://key:secret@cloud[?upload_prefix=…]`) and are passed with
 * every call, never through the SDK's global config, so several storages can
 * live in one process. Results go to `<folder>/<vendor>/<project>/…`; a
 * retried job overwrites its own public id.
 *
 * Every call gets its own HTTP agent: aborting the job destroys that agent's
 * socket, which is the only way to stop a request inside the SDK, so nothing
 * keeps uploading after a timeout. Failed uploads are retried (network
 * errors, 5xx, 429, timeouts), each try limited in time, the waits between
 * tries cut short by the same abort.
 */
export interface CloudinaryCredentials {
  cloudName: string;
  apiKey: string;
  apiSecret: string;
  /** API base URL; the SDK's default (https://api.cloudinary.com) when absent */
  uploadPrefix: string | undefined;
}

export interface CloudinarySettings {
  credentials: CloudinaryCredentials;
  folder: string;
  timeoutMs: number;
  retries: number;
}

export function parseCloudinaryUrl(raw: string): CloudinaryCredentials {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error('CLOUDINARY_URL is not a URL (expected cloudinary://<api_key>:<api_secret>@<cloud_name>)');
  }
  if (url.protocol !== 'cloudinary:' || !url.username || !url.password || !url.hostname) {
    throw new Error('CLOUDINARY_URL must look like cloudinary://<api_key>:<api_secret>@<cloud_name>');
  }
  const uploadPrefix = url.searchParams.get('upload_prefix') ?? undefined;
  if (uploadPrefix !== undefined && !/^https?:\/\/[^\s/]+/.test(uploadPrefix)) throw new Error('CLOUDINARY_URL upload_prefix must be an http(s) URL');
  return {
    cloudName: decodeURIComponent(url.hostname),
    apiKey: decodeURIComponent(url.username),
    apiSecret: decodeURIComponent(url.password),
    uploadPrefix: uploadPrefix?.replace(/\/+$/, ''),
  };
}

/** Cloudinary's public id of a storage key: under the folder, without the extension. */
export function publicIdOf(folder: string, key: string): string {
  return `${folder.replace(/^\/+|\/+$/g, '')}/${key.replace(/\.[A-Za-z0-9]+$/, '')}`;
}

export function cloudinaryStorage(settings: CloudinarySettings): Storage {
  const { credentials, folder, timeoutMs, retries } = settings;
  const secure = !credentials.uploadPrefix?.startsWith('http:');
  const callOptions = (agent: HttpAgent) => ({
    cloud_name: credentials.cloudName,
    api_key: credentials.apiKey,
    api_secret: credentials.apiSecret,
    ...(credentials.uploadPrefix ? { upload_prefix: credentials.uploadPrefix } : {}),
    timeout: timeoutMs,
    agent,
  });
  const newAgent = (): HttpAgent => (secure ? new HttpsAgent({ keepAlive: false }) : new HttpAgent({ keepAlive: false }));

  /** One upload, stopped by `signal` (job abort or the per-try timeout). */
  function uploadOnce(key: string, bytes: Buffer, signal: AbortSignal): Promise<UploadApiResponse> {
    const agent = newAgent();
    const segments = key.split('/');
    const options: UploadApiOptions = {
      ...callOptions(agent),
      public_id: publicIdOf(folder, key),
      asset_folder: [folder, ...segments.slice(0, Math.min(2, segments.length - 1))].join('/'),
      resource_type: 'image',
      overwrite: true,
      invalidate: true,
      unique_filename: false,
      use_filename: false,
      disable_promises: true,
    };
    return new Promise<UploadApiResponse>((resolve, reject) => {
      let done = false;
      const finish = (error: unknown, result?: UploadApiResponse) => {
        if (done) return;
        done = true;
        signal.removeEventListener('abort', onAbort);
        agent.destroy();
        if (error) reject(error instanceof Error ? error : toError(error));
        else if (result) resolve(result);
        else reject(new Error('Cloudinary answered without a result'));
      };
      const onAbort = () => finish(signal.reason);
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      const stream = cloudinary.uploader.upload_stream(options, (error, result) => finish(error, result));
      stream.on('error', (error: Error) => finish(error));
      stream.end(bytes);
    });
  }

  /** An admin API call, stopped by `signal` through its agent. */
  async function adminCall(signal: AbortSignal, call: (options: ReturnType<typeof callOptions> & { invalidate: boolean }) => Promise<unknown>): Promise<void> {
    const agent = newAgent();
    const onAbort = () => agent.destroy();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await Promise.race([call({ ...callOptions(agent), invalidate: true }), aborted(signal)]);
    } finally {
      signal.removeEventListener('abort', onAbort);
      agent.destroy();
    }
  }

  async function destroyOnce(publicId: string, signal: AbortSignal): Promise<void> {
    const agent = newAgent();
    const onAbort = () => agent.destroy();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const result = (await Promise.race([
        cloudinary.uploader.destroy(publicId, { ...callOptions(agent), resource_type: 'image', invalidate: true }),
        aborted(signal),
      ])) as { result?: string };
      if (result.result !== 'ok' && result.result !== 'not found') throw new Error(`Cloudinary destroy answered ${JSON.stringify(result).slice(0, 200)}`);
    } finally {
      signal.removeEventListener('abort', onAbort);
      agent.destroy();
    }
  }

  return {
    driver: 'cloudinary',
    async put(key, bytes, _contentType, signal): Promise<StoredObject> {
      assertSafeKey(key);
      const result = await withRetries(retries, signal, timeoutMs, (trySignal) => uploadOnce(key, bytes, trySignal), 'upload');
      return { key, url: result.secure_url, bytes: bytes.length };
    },
    async get(object, signal) {
      return withRetries(retries, signal, timeoutMs, (trySignal) => download(object.url, trySignal), 'download');
    },
    async remove(target, signal) {
      // One key: the upload API's signed destroy. Several: the admin API's
      // delete_resources, up to 100 public ids per call. A prefix (a job's
      // outputs, named by the worker): delete_resources_by_prefix. Cloudinary
      // answers "not_found" for what is already gone, which is success here.
      if ('prefix' in target) {
        assertSafeKey(target.prefix);
        const prefix = `${publicIdOf(folder, target.prefix)}/`;
        await withRetries(retries, signal, timeoutMs, (s) => adminCall(s, (o) => cloudinary.api.delete_resources_by_prefix(prefix, o)), 'delete');
        return;
      }
      const ids = target.keys.map((key) => {
        assertSafeKey(key);
        return publicIdOf(folder, key);
      });
      if (ids.length === 1) {
        const [id] = ids as [string];
        await withRetries(retries, signal, timeoutMs, (s) => destroyOnce(id, s), 'delete');
        return;
      }
      for (let i = 0; i < ids.length; i += 100) {
        const chunk = ids.slice(i, i + 100);
        await withRetries(retries, signal, timeoutMs, (s) => adminCall(s, (o) => cloudinary.api.delete_resources(chunk, o)), 'delete');
      }
    },
    async check() {
      const agent = newAgent();
      try {
        await cloudinary.api.ping(callOptions(agent));
      } catch (error) {
        throw new Error(`Cloudinary ping failed: ${describe(error)}`, { cause: error });
      } finally {
        agent.destroy();
      }
    },
  };
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

async function download(url: string, signal: AbortSignal): Promise<Buffer> {
  const response = await request(url, { method: 'GET', signal });
  if (response.statusCode !== 200) {
    response.body.resume();
    throw Object.assign(new Error(`Cloudinary answered ${response.statusCode}`), { http_code: response.statusCode });
  }
  return Buffer.from(await response.body.arrayBuffer());
}

/**
 * Runs `attempt` up to 1 + `retries` times, each try limited to `timeoutMs`
 * and all of it stopped by `signal`. Errors Cloudinary will repeat (4xx other
 * than 408/429) are not retried.
 */
async function withRetries<T>(
  retries: number,
  signal: AbortSignal | undefined,
  timeoutMs: number,
  attempt: (signal: AbortSignal) => Promise<T>,
  what: string,
): Promise<T> {
  for (let tryNo = 0; ; tryNo++) {
    signal?.throwIfAborted();
    const limit = deadline(timeoutMs, signal);
    try {
      return await attempt(limit.signal);
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      const timedOut = limit.timedOut;
      const retryable = timedOut || isRetryable(error);
      if (!retryable || tryNo >= retries) {
        const status = httpCode(error);
        if (status === 404 && what === 'download') throw new AppError('SOURCE_NOT_FOUND', 'the uploaded file is no longer in Cloudinary');
        throw new AppError('STORAGE_FAILED', `Cloudinary ${what} failed: ${timedOut ? `no answer within ${timeoutMs} ms` : describe(error)}`, {
          cause: error,
          retryable,
        });
      }
      await sleep(Math.min(500 * 2 ** tryNo, 5000), undefined, signal ? { signal } : undefined);
    } finally {
      limit.release();
    }
  }
}

function httpCode(raw: unknown): number | undefined {
  const error = (raw as { error?: unknown } | null)?.error ?? raw;
  const code = (error as { http_code?: unknown } | null)?.http_code;
  return typeof code === 'number' ? code : undefined;
}

function isRetryable(error: unknown): boolean {
  const status = httpCode(error);
  if (status === undefined) return true; // network error, reset, DNS
  return status === 408 || status === 420 || status === 429 || status === 499 || status >= 500;
}

function describe(raw: unknown): string {
  // The SDK's admin API rejects with `{ error: { message, http_code } }`.
  const error = (raw as { error?: unknown } | null)?.error ?? raw;
  const status = httpCode(error);
  const message = (error as { message?: unknown } | null)?.message;
  return `${status ? `HTTP ${status}: ` : ''}${typeof message === 'string' ? message : String(error)}`.slice(0, 300);
}

function toError(value: unknown): Error {
  const message = (value as { message?: unknown } | null)?.message;
  return Object.assign(new Error(typeof message === 'string' ? message : 'Cloudinary request failed'), value as object);
}
