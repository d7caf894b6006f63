import { randomBytes } from 'node:crypto';
import { ulid } from 'ulid';

/**
 * Ledger ids are ULIDs: sortable by creation time (cursor pagination) with 80
 * random bits. Not monotonic on purpose: consecutive ids must not be guessable.
 */
export function newId(): string {
  return ulid(undefined, pooledRandom);
}

/** A URL-safe random token of `bytes` bytes of entropy. */
export function randomToken(bytes = 16): string {
  return randomBytes(bytes).toString('base64url');
}

/**
 * ulid's own generator asks the OS for one random byte per character (16
 * calls per id), which made id generation the largest cost of a 1000-item
 * bulk. The same CSPRNG bytes, fetched 4 KiB at a time, are as random.
 */
const POOL_BYTES = 4096;
let pool = randomBytes(POOL_BYTES);
let offset = 0;

function pooledRandom(): number {
  if (offset >= POOL_BYTES) {
    pool = randomBytes(POOL_BYTES);
    offset = 0;
  }
  return (pool[offset++] as number) / 256;
}
