import { AppError } from '../../jobs/errors.js';

/**
 * Where uploads and results live. Keys are relative paths of safe characters
 * chosen by this system (never by a vendor), e.g.
 * `<vendorId>/<project>/<jobId>-<random>/<output>.png`; the random part makes
 * the public URL unguessable.
 */
export interface StoredObject {
  key: string;
  url: string;
  bytes: number;
}

export interface Storage {
  readonly driver: 'local' | 'cloudinary';
  put(key: string, bytes: Buffer, contentType: string, signal?: AbortSignal): Promise<StoredObject>;
  /** Reads back an object this storage wrote (uploads the API stored for a job). */
  get(object: { key: string; url: string }, signal?: AbortSignal): Promise<Buffer>;
  /**
   * Removes objects, or every object under a key prefix (a job's outputs).
   * Removing what is already gone is not an error; a failure throws, and the
   * caller tries again later.
   */
  remove(target: { keys: readonly string[] } | { prefix: string }, signal?: AbortSignal): Promise<void>;
  /** Throws when the storage cannot be written (checked before a worker takes jobs). */
  check(): Promise<void>;
}

const SAFE_KEY = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/;

export function assertSafeKey(key: string): void {
  if (!SAFE_KEY.test(key) || key.includes('..') || key.length > 512) {
    throw new AppError('STORAGE_FAILED', `refusing unsafe storage key ${JSON.stringify(key.slice(0, 80))}`, { retryable: false });
  }
}

/** A vendor-supplied id made safe for use as one path segment. */
export function keySegment(value: string, max = 64): string {
  const cleaned = value
    .normalize('NFKD')
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, max);
  return cleaned || 'x';
}

export const EXTENSIONS: Record<string, string> = {
  'image/jpeg': 'jpg',
  'image/png': 'png',
  'image/webp': 'webp',
  'image/avif': 'avif',
  'image/heic': 'heic',
  'image/heif': 'heif',
  'image/gif': 'gif',
  'image/tiff': 'tiff',
};

export const CONTENT_TYPES: Record<string, string> = {
  jpeg: 'image/jpeg',
  jpg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  avif: 'image/avif',
  heif: 'image/heif',
  heic: 'image/heic',
  gif: 'image/gif',
  tiff: 'image/tiff',
  zip: 'application/zip',
};
