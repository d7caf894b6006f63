import { Agent, request, type Dispatcher } from 'undici';
import { AppError } from '../jobs/errors.js';
import { checkUrl, guardedLookup, isAllowlisted, type UrlPolicy } from './address-guard.js';
import { deadline, type Deadline } from './deadline.js';

/**
 * The one way this system fetches a URL a vendor gave it: http/https only,
 * every resolved address checked (see address-guard), redirects followed by
 * hand and re-checked, a byte limit enforced while streaming and a time limit
 * over the whole exchange. Aborting `signal` stops the transfer.
 */
export interface FetchLimits {
  allowPrivate: boolean;
  /** private `host:port` pairs that may be fetched anyway (parseHostAllowlist) */
  allowedPrivateHosts?: readonly string[];
  maxBytes: number;
  timeoutMs: number;
  maxRedirects: number;
}

export interface FetchedSource {
  bytes: Buffer;
  contentType: string | null;
  finalUrl: string;
}

const agents = new Map<string, Dispatcher>();

/** One connection pool per (private allowed?, purpose): the purpose only names the URL in errors. */
function agentFor(policy: UrlPolicy): Dispatcher {
  const key = `${policy.allowPrivate}:${policy.purpose}`;
  let agent = agents.get(key);
  if (!agent) {
    agent = new Agent({ connect: { lookup: guardedLookup(policy), timeout: 10_000 }, keepAliveTimeout: 4_000, connections: 64 });
    agents.set(key, agent);
  }
  return agent;
}

export async function fetchSource(rawUrl: string, limits: FetchLimits, signal?: AbortSignal, purpose = 'source'): Promise<FetchedSource> {
  const policy: UrlPolicy = {
    allowPrivate: limits.allowPrivate,
    purpose,
    ...(limits.allowedPrivateHosts ? { allowedPrivateHosts: limits.allowedPrivateHosts } : {}),
  };
  const limit = deadline(limits.timeoutMs, signal);
  try {
    return await fetchWithin(rawUrl, policy, limits, limit, signal);
  } finally {
    limit.release();
  }
}

async function fetchWithin(rawUrl: string, policy: UrlPolicy, limits: FetchLimits, limit: Deadline, signal?: AbortSignal): Promise<FetchedSource> {
  const { purpose } = policy;
  let url = checkUrl(rawUrl, policy);
  for (let hop = 0; ; hop++) {
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, {
        method: 'GET',
        // An allowlisted host:port may resolve to a private address; every
        // other hop (a redirect from it included) goes through the guard.
        dispatcher: agentFor(isAllowlisted(url, policy) ? { allowPrivate: true, purpose } : policy),
        signal: limit.signal,
        headers: { accept: 'image/*,*/*;q=0.5', 'user-agent': 'imagequeue-fetch/1' },
        headersTimeout: limits.timeoutMs,
        bodyTimeout: limits.timeoutMs,
      });
    } catch (error) {
      throw translateFetchError(error, url, limit, signal, purpose);
    }
    const { statusCode, headers, body } = response;
    if (statusCode >= 300 && statusCode < 400 && headers.location) {
      body.resume();
      if (hop >= limits.maxRedirects)
        throw new AppError('SOURCE_FETCH_FAILED', `${purpose} URL redirected more than ${limits.maxRedirects} times`, { retryable: false });
      url = checkUrl(new URL(String(headers.location), url).toString(), policy);
      continue;
    }
    if (statusCode >= 400) {
      body.resume();
      throw statusError(statusCode, purpose);
    }
    const declared = Number(headers['content-length']);
    if (Number.isFinite(declared) && declared > limits.maxBytes) {
      abandon(body);
      throw new AppError('SOURCE_TOO_LARGE', `${purpose} is ${declared} bytes; the limit is ${limits.maxBytes}`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of body) {
        size += (chunk as Buffer).length;
        if (size > limits.maxBytes) {
          abandon(body);
          throw new AppError('SOURCE_TOO_LARGE', `${purpose} is larger than the limit of ${limits.maxBytes} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
    } catch (error) {
      if (error instanceof AppError) throw error;
      throw translateFetchError(error, url, limit, signal, purpose);
    }
    const contentType = headers['content-type'];
    return { bytes: Buffer.concat(chunks, size), contentType: typeof contentType === 'string' ? contentType : null, finalUrl: url.toString() };
  }
}

/**
 * Stops a response body we will not read. undici's body emits a "Request
 * aborted" error when destroyed before its end; nobody listens any more, so
 * without a listener that error would crash the process.
 */
function abandon(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

function statusError(status: number, purpose: string): AppError {
  if (status === 404 || status === 410) return new AppError('SOURCE_NOT_FOUND', `${purpose} URL answered ${status}`);
  const retryable = status === 408 || status === 425 || status === 429 || status >= 500;
  return new AppError('SOURCE_FETCH_FAILED', `${purpose} URL answered ${status}`, { retryable });
}

function translateFetchError(error: unknown, url: URL, limit: Deadline, outer: AbortSignal | undefined, purpose: string): unknown {
  if (error instanceof AppError) return error;
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof AppError) return cause;
  if (outer?.aborted) return outer.reason ?? error;
  if (limit.timedOut || ((error as { code?: string }).code?.startsWith('UND_ERR_') && /timeout/i.test((error as Error).message))) {
    return new AppError('SOURCE_TIMEOUT', `fetching the ${purpose} URL took too long`, { cause: error });
  }
  return connectionFailure(error, purpose, url);
}

/**
 * A network failure in words a vendor may read: what kind of failure, never
 * the driver's message (it names resolved addresses and ports, which would
 * tell a vendor what a name inside our network points at). The cause, with
 * the URL, stays on the error for the operator's log.
 */
export function connectionFailure(error: unknown, purpose: string, url?: URL): AppError {
  const code = (error as { code?: string }).code ?? (error as { cause?: { code?: string } }).cause?.code;
  const what = (code && NETWORK_FAILURES[code]) ?? 'the connection failed';
  const details = url ? { url: url.toString(), code: code ?? null } : { code: code ?? null };
  return new AppError('SOURCE_FETCH_FAILED', `${purpose} URL could not be fetched: ${what}`, {
    cause: error,
    details,
    retryable: code !== 'ENOTFOUND',
  });
}

const NETWORK_FAILURES: Record<string, string> = {
  ENOTFOUND: 'its host name does not resolve',
  EAI_AGAIN: 'its host name could not be resolved just now',
  ECONNREFUSED: 'the connection was refused',
  ECONNRESET: 'the connection was reset',
  EPIPE: 'the connection was closed',
  ETIMEDOUT: 'the connection timed out',
  EHOSTUNREACH: 'the host is unreachable',
  ENETUNREACH: 'the network is unreachable',
  UND_ERR_SOCKET: 'the connection was closed mid-answer',
  UND_ERR_CONNECT_TIMEOUT: 'the connection timed out',
  HPE_INVALID_CONSTANT: 'the answer is not valid HTTP',
  UND_ERR_INFO: 'the answer is not valid HTTP',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'its TLS certificate is self-signed',
  SELF_SIGNED_CERT_IN_CHAIN: 'its TLS certificate is self-signed',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'its TLS certificate could not be verified',
  CERT_HAS_EXPIRED: 'its TLS certificate has expired',
  ERR_TLS_CERT_ALTNAME_INVALID: 'its TLS certificate does not name the host',
};
