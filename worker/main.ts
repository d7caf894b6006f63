import { loadWorkerConfig } from './config.js';
import { createWorker } from './worker.js';
import { runMain } from '../platform/process.js';

/** Starts a worker process: config, readiness checks, then the queues. */
await runMain(
  'worker',
  async () => {
    const config = loadWorkerConfig();
    const worker = createWorker(config);
    await worker.start();
    return { log: worker.log, close: () => worker.close() };
  },
  60_000,
);
