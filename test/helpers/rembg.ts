import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import type { Test } from 'tap';
import { childEnv } from '../../platform/config.js';
import { buildRembgApp } from '../../rembg/app.js';
import { loadRembgConfig } from '../../rembg/config.js';
import { waitFor } from './wait.js';
import { freePort } from './private-services.js';

/**
 * Real rembg service instances for tests: in this process (an app to
 * `inject`, or listening on a free port), or as a child process
 * (`node --import tsx rembg/server.ts`) that a test can kill and start again
 * on the same port.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export const REMBG_TEST_ENV: Record<string, string> = {
  NODE_ENV: 'test',
  LOG_LEVEL: 'warn',
  ALLOW_PRIVATE_SOURCE_URLS: 'true',
  REMBG_THREADS: '1',
};

/** The service as an app, not listening (for `inject`). Closed at teardown. */
export async function rembgApp(t: Test, env: Record<string, string> = {}): Promise<FastifyInstance> {
  const config = loadRembgConfig({ env: { ...REMBG_TEST_ENV, ...env }, processEnv: false });
  const app = await buildRembgApp(config, { logger: false });
  t.teardown(() => app.close());
  return app;
}

/** The service in this process, listening on a free local port. */
export async function rembgListening(t: Test, env: Record<string, string> = {}): Promise<{ url: string; app: FastifyInstance }> {
  const app = await rembgApp(t, env);
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  return { url: address, app };
}

export interface RembgProcess {
  url: string;
  port: number;
  child(): ChildProcess | null;
  /** SIGKILL, and wait for the exit */
  kill(): Promise<void>;
  /** starts it again on the same port, resolving once /health answers 200 */
  start(): Promise<void>;
}

/** A rembg instance in its own process on a free port, killed at teardown. */
export async function spawnRembg(t: Test, env: Record<string, string> = {}): Promise<RembgProcess> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let child: ChildProcess | null = null;
  let output = '';
  const start = async () => {
    output = '';
    const proc = spawn(process.execPath, ['--import', 'tsx', 'rembg/server.ts'], {
      cwd: ROOT,
      env: childEnv({ ...REMBG_TEST_ENV, ...env, REMBG_HOST: '127.0.0.1', REMBG_PORT: String(port) }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new Error(`rembg on port ${port} exited early:\n${output}`);
      const res = await fetch(`${url}/health`).catch(() => null);
      return res?.status === 200;
    }, 90_000);
  };
  const kill = async () => {
    const proc = child;
    child = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await exited;
  };
  t.teardown(kill);
  await start();
  return { url, port, child: () => child, kill, start };
}

/** A real HTTP server that holds each request `delayMs`, then forwards it to `target`: an instance on a slow host. */
export async function slowProxy(scope: Pick<Test, 'teardown'>, target: string, delayMs: number): Promise<string> {
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      setTimeout(() => {
        fetch(`${target}${req.url}`, {
          method: req.method ?? 'GET',
          headers: { 'content-type': req.headers['content-type'] ?? 'application/octet-stream' },
          ...(req.method === 'POST' ? { body: Buffer.concat(chunks) } : {}),
        })
          .then(async (upstream) => {
            res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/octet-stream' });
            res.end(Buffer.from(await upstream.arrayBuffer()));
          })
          .catch(() => res.writeHead(502).end());
      }, delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  scope.teardown(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
