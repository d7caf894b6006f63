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
  return takeRandomBytes(bytes).toString('base64url');
}

/**
 * Random bytes from the CSPRNG, fetched 4 KiB at a time. ulid's own
 * generator asks for one byte per character (16 calls per id) and a
 * `randomBytes(12)` per output prefix cost more than the rest of an enqueue's
 * own work: both were the largest items in the enqueue profile. The bytes are
 * the same; only the calls are fewer. Each byte is handed out once.
 */
const POOL_BYTES = 4096;
let pool = randomBytes(POOL_BYTES);
let offset = 0;

function takeRandomBytes(n: number): Buffer {
  if (n > POOL_BYTES / 4) return randomBytes(n);
  if (offset + n > POOL_BYTES) {
    pool = randomBytes(POOL_BYTES);
    offset = 0;
  }
  const out = Buffer.from(pool.subarray(offset, offset + n));
  offset += n;
  return out;
}

function pooledRandom(): number {
  if (offset >= POOL_BYTES) {
    pool = randomBytes(POOL_BYTES);
    offset = 0;
  }
  return (pool[offset++] as number) / 256;
}
