import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../backend/app.js';
import { loadApiConfig } from '../backend/config.js';
import { connectDb, serverPool } from '../db/connect.js';
import { ensureDatabase, migrateToLatest } from '../db/migrate.js';
import { createVendor } from '../db/repos/vendors.js';
import { childEnv } from '../platform/config.js';
import { fixturePath } from '../test/helpers/fixtures.js';
import { freePort } from '../test/helpers/private-services.js';
import { jpegHost, post, settle, untilHealthy } from './support.js';

/**
 * Background removal as deployed on one machine, for the end-to-end benches:
 * a listening API (this process), one worker process, `instances` rembg
 * processes behind the worker's pool, the fixture photos on a local image
 * host, results on local disk, a scratch database and Bull prefix next to the
 * local MySQL and Redis. Every instance has seen every photo once (warm-up)
 * when it is returned.
 */
export interface RembgStack {
  app: FastifyInstance;
  api: string;
  apiKey: string;
  token: string;
  /** The fixture photos, served by the image host under `/<name>`. */
  names: string[];
  sourceUrl: string;
  /** POST /api/image-queue/remove-bg-queue for one photo; the job id. */
  submit(recordId: string, photo: string): Promise<string>;
  close(): Promise<void>;
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURES = fixturePath('rembg/');
const NAMES = ['anime-girl-1.jpg', 'car-1.jpg', 'cloth-1.jpg', 'plants-1.jpg'];
const MYSQL_BASE = 'mysql://root@127.0.0.1:3306';
const REDIS_URL = 'redis://127.0.0.1:6379';

export async function startRembgStack(o: { instances: number; concurrency: number; instanceThreads: number }): Promise<RembgStack> {
  const suffix = randomBytes(4).toString('hex');
  const mysqlUrl = `${MYSQL_BASE}/iqbench_${suffix}`;
  const storageDir = await mkdtemp(join(tmpdir(), 'iqbench-'));
  await ensureDatabase(mysqlUrl);
  const migrateDb = connectDb({ url: mysqlUrl, poolSize: 1 });
  await migrateToLatest(migrateDb);
  await migrateDb.destroy();
  const children: ChildProcess[] = [];
  const source = await jpegHost(new Map(await Promise.all(NAMES.map(async (n) => [`/${n}`, await readFile(`${FIXTURES}${n}`)] as [string, Buffer]))));
  const urls: string[] = [];
  for (let i = 0; i < o.instances; i++) {
    const port = await freePort();
    children.push(start('rembg/server.ts', { LOG_LEVEL: 'warn', NODE_ENV: 'production', REMBG_PORT: String(port), REMBG_THREADS: String(o.instanceThreads) }));
    urls.push(`http://127.0.0.1:${port}`);
  }
  const env: Record<string, string> = {
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    MYSQL_URL: mysqlUrl,
    REDIS_URL,
    BULL_PREFIX: `iqbench${suffix}`,
    STORAGE_DRIVER: 'local',
    STORAGE_LOCAL_DIR: storageDir,
    JWT_SECRET: randomBytes(32).toString('hex'),
    ALLOW_PRIVATE_SOURCE_URLS: 'true',
    WORKER_QUEUES: 'background-removal',
    CONCURRENCY_BACKGROUND_REMOVAL: String(o.concurrency),
    REMBG_URLS: urls.join(','),
    JOB_TIMEOUT_MS: '120000',
  };
  const app = await buildApp(loadApiConfig({ env, processEnv: false }), { logger: false });
  const close = async (): Promise<void> => {
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null)));
    await app.close();
    source.server.close();
    const pool = serverPool(mysqlUrl);
    await pool.promise().query(`DROP DATABASE IF EXISTS \`iqbench_${suffix}\``);
    await pool.promise().end();
    await rm(storageDir, { recursive: true, force: true });
  };
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const api = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    env['PUBLIC_BASE_URL'] = api;
    for (const url of urls) await untilHealthy(url);
    children.push(start('worker/main.ts', env));
    const { apiKey } = await createVendor(app.db, { name: 'Bench Studio', plan: 'unlimited' });
    const token = ((await (await fetch(`${api}/api/auth/token`, post({ apiKey }))).json()) as { token: string }).token;
    const submit = async (recordId: string, photo: string): Promise<string> => {
      const res = await fetch(`${api}/api/image-queue/remove-bg-queue`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ recordId, projectId: 'bench', photoUrl: `${source.url}/${photo}` }),
      });
      if (res.status !== 202) throw new Error(`remove-bg-queue answered ${res.status}: ${await res.text()}`);
      return ((await res.json()) as { jobId: string }).jobId;
    };
    // warm-up: the worker starts, every instance sees every image
    await settle(app, await Promise.all(urls.flatMap((_, u) => NAMES.map((n, i) => submit(`warm-${u}-${i}`, n)))), 300_000);
    return { app, api, apiKey, token, names: NAMES, sourceUrl: source.url, submit, close };
  } catch (err) {
    await close();
    throw err;
  }
}

function start(script: string, env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'ignore', 'inherit'] });
  child.on('exit', (code, signal) => {
    if (code !== 0 && signal !== 'SIGTERM') console.error(`${script} exited (${code ?? signal})`);
  });
  return child;
}
