import type { JobSource } from '../jobs/payloads.js';
import { inspectImage, type ImageInfo } from '../platform/images.js';
import { fetchSource, type FetchLimits } from '../platform/source-fetch.js';
import type { Storage } from '../platform/storage/index.js';

/**
 * Loads a job's source: a vendor URL through the guarded fetcher, or an
 * upload back from storage. Either way the bytes are checked to be an
 * accepted image within the pixel limit before any work starts.
 */
export async function loadSource(
  source: JobSource,
  deps: { storage: Storage; limits: FetchLimits; maxPixels: number },
  signal: AbortSignal,
): Promise<{ bytes: Buffer; info: ImageInfo }> {
  const bytes = source.type === 'url' ? (await fetchSource(source.url, deps.limits, signal)).bytes : await deps.storage.get(source, signal);
  const info = await inspectImage(bytes, deps.maxPixels);
  return { bytes, info };
}
