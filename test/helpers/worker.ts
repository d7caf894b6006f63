import type { Test } from 'tap';
import { loadWorkerConfig } from '../../worker/config.js';
import { createWorker, type Worker, type WorkerOptions } from '../../worker/worker.js';
import { createLogger } from '../../platform/logger.js';
import type { TestEnv } from './env.js';

/** A worker running in this process, closed at teardown. */
export async function testWorker(t: Test, env: TestEnv, options: WorkerOptions = {}): Promise<Worker> {
  const config = loadWorkerConfig({ env, processEnv: false });
  const worker = createWorker(config, { logger: createLogger(env['LOG_LEVEL'] ?? 'warn', 'worker'), ...options });
  await worker.start();
  t.teardown(() => worker.close());
  return worker;
}
