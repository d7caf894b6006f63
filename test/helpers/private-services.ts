import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Test } from 'tap';
import { waitFor } from './wait.js';

const run = promisify(execFile);

/**
 * Private MariaDB and Redis servers for tests that must break them (stop,
 * restart, flush, lower max_allowed_packet). The shared servers on 3306/6379
 * are used by every other test file running in parallel and must never be
 * flushed, reconfigured or stopped.
 */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface PrivateServer {
  url: string;
  port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** SIGKILL, no shutdown */
  kill(): void;
}

export async function privateRedis(t: Test): Promise<PrivateServer> {
  const dir = await mkdtemp(join(tmpdir(), 'iqt-redis-'));
  const port = await freePort();
  const ping = () =>
    run('redis-cli', ['-p', String(port), 'ping'])
      .then((r) => r.stdout.includes('PONG'))
      .catch(() => false);
  return childServer(t, { url: `redis://127.0.0.1:${port}`, port, dir, timeoutMs: 10_000 }, ping, () =>
    spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' }),
  );
}

export async function privateMariadb(t: Test, options: { maxAllowedPacket?: number } = {}): Promise<PrivateServer> {
  const dir = await mkdtemp(join(tmpdir(), 'iqt-mariadb-'));
  const port = await freePort();
  await run('mariadb-install-db', ['--no-defaults', `--datadir=${dir}/data`, '--user=root', '--auth-root-authentication-method=normal', '--skip-test-db']);
  const args = [
    '--no-defaults',
    `--datadir=${dir}/data`,
    `--port=${port}`,
    '--bind-address=127.0.0.1',
    `--socket=${dir}/sock`,
    '--user=root',
    '--skip-log-bin',
    '--innodb-buffer-pool-size=32M',
    ...(options.maxAllowedPacket ? [`--max-allowed-packet=${options.maxAllowedPacket}`] : []),
  ];
  const ping = () =>
    run('mariadb', ['-uroot', '-h127.0.0.1', `-P${port}`, '-e', 'SELECT 1'])
      .then(() => true)
      .catch(() => false);
  return childServer(t, { url: `mysql://root@127.0.0.1:${port}`, port, dir, timeoutMs: 30_000 }, ping, () => spawn('mariadbd', args, { stdio: 'ignore' }));
}

/** A server in a child process: started now, stopped and its directory removed at teardown. */
async function childServer(
  t: Test,
  where: { url: string; port: number; dir: string; timeoutMs: number },
  ping: () => Promise<boolean>,
  launch: () => ChildProcess,
): Promise<PrivateServer> {
  let child: ChildProcess | undefined;
  const server: PrivateServer = {
    url: where.url,
    port: where.port,
    async start() {
      child = launch();
      await waitFor(ping, where.timeoutMs, 50);
    },
    async stop() {
      if (!child) return;
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      child = undefined;
    },
    kill() {
      child?.kill('SIGKILL');
      child = undefined;
    },
  };
  await server.start();
  t.teardown(async () => {
    await server.stop();
    await rm(where.dir, { recursive: true, force: true });
  });
  return server;
}
