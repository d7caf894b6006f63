import type { RembgInstanceState } from '../../jobs/heartbeat.js';
import type { JobKind } from '../../jobs/queues.js';
import type { Logger } from '../../platform/logger.js';
import type { WorkerConfig } from '../config.js';
import type { Processor } from '../context.js';
import { processImage } from './process-image.js';

/**
 * The processors of each job kind, and the long-lived resources they need
 * (model sessions, the rembg pool), built once per worker process. Resources
 * are checked before the worker takes jobs and closed after its queues.
 */
export type ProcessorMap = { [K in JobKind]?: Processor<K> };

export interface WorkerResource {
  name: string;
  /** throws while the resource cannot serve jobs (checked before queues start) */
  check?(): Promise<void>;
  close(): Promise<void>;
  /** the rembg instances this resource balances over, as the worker heartbeat reports them */
  rembgInstances?(): RembgInstanceState[];
}

export interface ProcessorSet {
  processors: ProcessorMap;
  resources: WorkerResource[];
}

export async function buildProcessors(_config: WorkerConfig, _log: Logger): Promise<ProcessorSet> {
  return { processors: { process: processImage }, resources: [] };
}
