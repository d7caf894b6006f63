import { Agent, request, type Dispatcher } from 'undici';
import { AppError } from '../../jobs/errors.js';
import { checkUrl, guardedLookup, isAllowlisted, type UrlPolicy } from '../../platform/address-guard.js';
import { deadline } from '../../platform/deadline.js';
import { connectionFailure } from '../../platform/source-fetch.js';

/**
 * One webhook POST through the same SSRF guard as source fetching: the URL
 * is checked before connecting and every address its name resolves to is
 * checked at connect time (DNS rebinding cannot slip through). Redirects are
 * not followed: a receiver that redirects has not received the event.
 */
export interface DeliveryPolicy {
  allowPrivate: boolean;
  allowedPrivateHosts: readonly string[];
  /** ALLOW_HTTP_WEBHOOKS: plain http receivers (development and tests) */
  allowHttp: boolean;
  timeoutMs: number;
}

export interface DeliveryResult {
  statusCode: number;
}

const agents = new Map<boolean, Dispatcher>();

function agentFor(allowPrivate: boolean, policy: UrlPolicy): Dispatcher {
  let agent = agents.get(allowPrivate);
  if (!agent) {
    agent = new Agent({ connect: { lookup: guardedLookup({ ...policy, allowPrivate }), timeout: 10_000 }, keepAliveTimeout: 4_000, connections: 32 });
    agents.set(allowPrivate, agent);
  }
  return agent;
}

export function webhookUrlPolicy(policy: Pick<DeliveryPolicy, 'allowPrivate' | 'allowedPrivateHosts' | 'allowHttp'>): UrlPolicy {
  return { allowPrivate: policy.allowPrivate, purpose: 'webhook', allowedPrivateHosts: policy.allowedPrivateHosts, requireHttps: !policy.allowHttp };
}

/** POSTs the body; resolves with a 2xx status, throws an AppError (with the status, when there was one) otherwise. */
export async function postWebhook(rawUrl: string, body: string, headers: Record<string, string>, policy: DeliveryPolicy): Promise<DeliveryResult> {
  const urlPolicy = webhookUrlPolicy(policy);
  const url = checkUrl(rawUrl, urlPolicy);
  const limit = deadline(policy.timeoutMs);
  try {
    return await post(url, body, headers, policy, urlPolicy, limit.signal);
  } finally {
    limit.release();
  }
}

async function post(
  url: URL,
  body: string,
  headers: Record<string, string>,
  policy: DeliveryPolicy,
  urlPolicy: UrlPolicy,
  signal: AbortSignal,
): Promise<DeliveryResult> {
  let response: Dispatcher.ResponseData;
  try {
    response = await request(url, {
      method: 'POST',
      dispatcher: agentFor(policy.allowPrivate || isAllowlisted(url, urlPolicy), urlPolicy),
      signal,
      headers: { 'content-type': 'application/json', 'user-agent': 'imagequeue-webhooks/1', ...headers },
      body,
      headersTimeout: policy.timeoutMs,
      bodyTimeout: policy.timeoutMs,
    });
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause;
    if (error instanceof AppError) throw error;
    if (cause instanceof AppError) throw cause;
    if (signal.aborted) throw new AppError('SOURCE_TIMEOUT', `webhook receiver did not answer within ${policy.timeoutMs} ms`);
    throw connectionFailure(error, 'webhook', url);
  }
  await drainAtMost(response.body, RESPONSE_READ_BYTES);
  if (response.statusCode < 200 || response.statusCode >= 300) {
    throw Object.assign(new AppError('SOURCE_FETCH_FAILED', `webhook receiver answered ${response.statusCode}`), { receiverStatus: response.statusCode });
  }
  return { statusCode: response.statusCode };
}

/** How much of a receiver's answer is read: its content does not matter, and a receiver must not make a worker buffer gigabytes. */
export const RESPONSE_READ_BYTES = 4096;

/** Reads up to `max` bytes (so a short answer leaves the connection reusable), then drops the rest with the connection. */
async function drainAtMost(body: Dispatcher.ResponseData['body'], max: number): Promise<void> {
  let read = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      read += chunk.length;
      if (read > max) {
        body.destroy();
        return;
      }
    }
  } catch {
    // a receiver that breaks off its answer has still answered with its status
  }
}
