import type { Logger } from '../platform/logger.js';
import type { JobOutput, PayloadOf } from '../jobs/payloads.js';
import type { ImageInfo } from '../platform/images.js';

/**
 * What a processor gets for one attempt of one job, and what it returns.
 * Processors do the image work only; fetching, storing and ledger writes are
 * done for them, so every queue gets the same guarantees.
 */
export interface JobContext<K extends string> {
  payload: PayloadOf<K>;
  attempt: number;
  /** aborted when the attempt times out or the worker must stop */
  signal: AbortSignal;
  log: Logger;
  /** report progress (0–100) at a real stage boundary */
  progress(percent: number): Promise<void>;
  /** the source image bytes, fetched or read from storage, checked for format and pixel limit */
  loadSource(): Promise<{ bytes: Buffer; info: ImageInfo }>;
  /** another image by URL (a background image), fetched and checked exactly as a source is */
  loadUrl(url: string): Promise<{ bytes: Buffer; info: ImageInfo }>;
  /** stores one output under this job's prefix and describes it */
  store(name: string, bytes: Buffer, meta: { format: string; width: number; height: number }): Promise<JobOutput>;
}

export interface ProcessorOutput {
  /** the job's result as the status API shows it (top-level fields are written separately) */
  result: Record<string, unknown>;
  /** the summary columns of the vendor's data record */
  record: { processedPhotoUrl: string | null; width: number | null; height: number | null };
  /** fields written to the data record, namespaced by kind (e.g. `process.outputs`) */
  recordFields: Record<string, unknown>;
}

export type Processor<K extends string> = (ctx: JobContext<K>) => Promise<ProcessorOutput>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any kind's processor, the worker looks it up by the kind's name
export type AnyProcessor = Processor<any>;
