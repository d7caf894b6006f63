import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { Redis } from 'ioredis';
import { childEnv } from '../../platform/config.js';
import { heartbeatKey } from '../../jobs/heartbeat.js';
import type { TestEnv } from './env.js';
import { waitFor } from './wait.js';

/**
 * A real worker process (`node --import tsx worker/main.ts`), for tests that
 * kill or signal it. Resolves once its first heartbeat is in Redis, i.e. its
 * queues are being served.
 */
export interface WorkerProcess {
  id: string;
  child: ChildProcess;
  /** exit code (null when killed by a signal) */
  exited: Promise<number | null>;
  output(): string;
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export async function spawnWorker(t: Test, env: TestEnv, id: string, script = 'worker/main.ts'): Promise<WorkerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: ROOT,
    env: childEnv({ ...env, WORKER_ID: id }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const redis = new Redis(env['REDIS_URL'] as string);
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`worker ${id} exited early:\n${output}`);
      return (await redis.exists(heartbeatKey(env['BULL_PREFIX'] as string, id))) === 1;
    }, 60_000);
  } finally {
    redis.disconnect();
  }
  return { id, child, exited, output: () => output };
}
