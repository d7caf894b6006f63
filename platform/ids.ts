import { randomBytes } from 'node:crypto';
import { ulid } from 'ulid';

/**
 * Ledger ids are ULIDs: sortable by creation time (cursor pagination) with 80
 * random bits. Not monotonic on purpose: consecutive ids must not be guessable.
 */
export function newId(): string {
  return ulid();
}

/** A URL-safe random token of `bytes` bytes of entropy. */
export function randomToken(bytes = 16): string {
  return randomBytes(bytes).toString('base64url');
}
