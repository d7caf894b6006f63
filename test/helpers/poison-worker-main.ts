import { loadWorkerConfig } from '../../worker/config.js';
import { createWorker } from '../../worker/worker.js';
import { runMain } from '../../platform/process.js';
import { poison, poisonKind } from './poison-kind.js';

/** A worker process serving the poison kind (test/helpers/poison-kind.ts), as worker/main.ts serves the registry's. */
await runMain('worker', async () => {
  const worker = createWorker(loadWorkerConfig(), { kinds: [poisonKind], processors: { poison } });
  await worker.start();
  return { log: worker.log, close: () => worker.close() };
});
