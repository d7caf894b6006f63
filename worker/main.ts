import { loadWorkerConfig } from './config.js';
import { createWorker } from './worker.js';
import { runMain } from '../platform/process.js';
import { boundHeapGrowth } from '../platform/heap.js';

/** Starts a worker process: config, readiness checks, then the queues. */
await runMain(
  'worker',
  async () => {
    const config = loadWorkerConfig();
    boundHeapGrowth(config.WORKER_HEAP_GROWING_PERCENT);
    const worker = createWorker(config);
    await worker.start();
    return { log: worker.log, close: () => worker.close() };
  },
  60_000,
);
