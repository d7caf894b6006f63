import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * Structured JSON logs (pino) for every process. Secrets are kept out twice:
 * by field (REDACT_PATHS, for objects a caller logs) and, for whatever slips
 * into a message or an error's text, by a last scrub of each line before it
 * is written (scrubLine: tokens, API keys, webhook secrets, passwords in
 * URLs, base64 blobs).
 * Job log lines carry `jobId`, `vendorId`, `queue` and `attempt`; API lines
 * carry `reqId` and, once the token is checked, `vendorId`.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers.cookie',
  '*.headers.authorization',
  '*.headers.Authorization',
  'authorization',
  '*.authorization',
  'apiKey',
  '*.apiKey',
  'token',
  '*.token',
  'password',
  '*.password',
  'secret',
  '*.secret',
  'webhookSecret',
  '*.webhookSecret',
  'webhook_secret',
  '*.webhook_secret',
  'api_secret',
  '*.api_secret',
  'JWT_SECRET',
  '*.JWT_SECRET',
  'METRICS_TOKEN',
  '*.METRICS_TOKEN',
  'CLOUDINARY_URL',
  '*.CLOUDINARY_URL',
];

export function loggerOptions(level: string, name: string): LoggerOptions {
  return {
    level,
    name,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid, service: name },
  };
}

/** A pino logger writing scrubbed lines to `target` (stdout by default). */
export function createLogger(level: string, name: string, target?: LogTarget): Logger {
  return pino(loggerOptions(level, name), logDestination(target));
}

export interface LogTarget {
  write(line: string): unknown;
}

/**
 * The stream every process logs through: each serialized line is scrubbed,
 * then written to `target`, or synchronously to stdout (as pino does by
 * default, so no line is lost when a process exits).
 */
export function logDestination(target?: LogTarget): DestinationStream {
  const out: LogTarget = target ?? pino.destination({ dest: 1, sync: true });
  return { write: (line: string) => void out.write(scrubLine(line)) };
}

const SCRUBS: [RegExp, string][] = [
  // JSON Web Tokens (vendor tokens, anything signed)
  [/eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{8,}/g, '[redacted-jwt]'],
  // our API keys (platform/api-keys.ts) and webhook signing secrets
  [/iqk_[A-Za-z0-9_-]{8,}/g, 'iqk_[redacted]'],
  [/whsec_[A-Za-z0-9_-]{8,}/g, 'whsec_[redacted]'],
  // bearer and basic credentials quoted in a message
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, '$1 [redacted]'],
  // user:password@ in any URL (mysql://, redis://, cloudinary://, https://)
  [/([a-z][a-z0-9+.-]*:\/\/[^\s:/@"'\\]*:)[^\s@/"'\\]+@/gi, '$1[redacted]@'],
  // image bytes as data URLs, and any long base64 run
  [/data:[a-z]+\/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=]*/gi, '[redacted-data-url]'],
  [/[A-Za-z0-9+/]{512,}={0,2}/g, '[redacted-base64]'],
];

export function scrubLine(line: string): string {
  let out = line;
  for (const [pattern, replacement] of SCRUBS) out = out.replace(pattern, replacement);
  return out;
}
