import { createHash, timingSafeEqual } from 'node:crypto';
import { randomToken } from './ids.js';

/**
 * API keys are 256-bit random strings; only their SHA-256 is stored. A slow
 * password hash buys nothing for keys this long, and a plain digest lets the
 * API look a key up by its hash in one indexed query.
 */
const KEY_PREFIX = 'iqk_';

export function generateApiKey(): string {
  return `${KEY_PREFIX}${randomToken(32)}`;
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export function apiKeyPrefix(key: string): string {
  return key.slice(0, KEY_PREFIX.length + 6);
}

export function looksLikeApiKey(value: string): boolean {
  return value.startsWith(KEY_PREFIX) && value.length >= KEY_PREFIX.length + 40 && value.length <= 128;
}

export function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}
