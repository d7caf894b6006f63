import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import { connectDb } from '../db/connect.js';
import { ensureDatabase, migrateToLatest } from '../db/migrate.js';
import { childEnv, ConfigError } from '../platform/config.js';
import { loadLauncherConfig, type LauncherConfig } from './launcher-config.js';
import { checkMysql, checkRedis, describeConnectError } from './preflight.js';

/**
 * `npm start`: the whole service on one machine. Checks MySQL and Redis (and
 * says how to start whichever is missing), applies migrations, then runs the
 * API, the worker(s) and, unless REMBG_URLS points elsewhere, local rembg
 * instances, with every line of output prefixed by its process. A process
 * that crashes is restarted; Ctrl-C stops them all cleanly.
 */
const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
const script = (path: string) => fileURLToPath(new URL(`../${path}.${ext}`, import.meta.url));

ensureDotEnv();
let config: LauncherConfig;
try {
  config = loadLauncherConfig();
} catch (error) {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
}

await preflight(config);

interface Service {
  name: string;
  script: string;
  env: Record<string, string>;
  child?: ChildProcess;
  restarts: number[];
}

const rembgPorts = config.REMBG_URLS ? [] : Array.from({ length: config.REMBG_INSTANCES }, (_, i) => config.REMBG_PORT + i);
const rembgUrls = config.REMBG_URLS || rembgPorts.map((p) => `http://127.0.0.1:${p}`).join(',');
const services: Service[] = [
  ...rembgPorts.map((port, i) => ({ name: `rembg-${i}`, script: script('rembg/server'), env: { REMBG_PORT: String(port) }, restarts: [] })),
  { name: 'api', script: script('backend/server'), env: {}, restarts: [] },
  ...Array.from({ length: config.WORKER_PROCESSES }, (_, i) => ({
    name: config.WORKER_PROCESSES > 1 ? `worker-${i}` : 'worker',
    script: script('worker/main'),
    env: { REMBG_URLS: rembgUrls, WORKER_METRICS_PORT: String(config.WORKER_METRICS_PORT === 0 ? 0 : config.WORKER_METRICS_PORT + i) },
    restarts: [],
  })),
];
let stopping = false;
for (const service of services) launch(service);
console.log(`[start] API on http://localhost:${config.PORT} (docs at /docs); ${services.length} processes; Ctrl-C stops them all`);

process.on('SIGINT', () => stopAll('SIGINT'));
process.on('SIGTERM', () => stopAll('SIGTERM'));

function launch(service: Service): void {
  const child = spawn(process.execPath, [...process.execArgv, service.script], { env: childEnv(service.env), stdio: ['ignore', 'pipe', 'pipe'] });
  service.child = child;
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => process.stdout.write(`[${service.name}] ${line}\n`));
  }
  child.on('exit', (code, signal) => {
    service.child = undefined;
    if (stopping) return;
    const now = Date.now();
    service.restarts = [...service.restarts.filter((t) => now - t < 60_000), now];
    if (service.restarts.length > 5) {
      console.error(`[start] ${service.name} keeps crashing (exit ${code ?? signal}); stopping everything`);
      stopAll('SIGTERM', 1);
      return;
    }
    console.error(`[start] ${service.name} exited (${code ?? signal}); restarting in 1 s`);
    setTimeout(() => !stopping && launch(service), 1000);
  });
}

function stopAll(signal: NodeJS.Signals, exitCode = 0): void {
  if (stopping) return;
  stopping = true;
  console.log(`[start] stopping (${signal})…`);
  const running = services.filter((s) => s.child);
  if (running.length === 0) process.exit(exitCode);
  let left = running.length;
  for (const service of running) {
    service.child!.once('exit', () => {
      if (--left === 0) process.exit(exitCode);
    });
    service.child!.kill('SIGTERM');
  }
  setTimeout(() => {
    for (const s of services) s.child?.kill('SIGKILL');
    process.exit(exitCode || 1);
  }, 70_000).unref();
}

async function preflight(c: LauncherConfig): Promise<void> {
  const problems: string[] = [];
  await checkMysql(c.MYSQL_URL).catch((e: unknown) => problems.push(describeConnectError('MySQL', c.MYSQL_URL, e)));
  await checkRedis(c.REDIS_URL).catch((e: unknown) => problems.push(describeConnectError('Redis', c.REDIS_URL, e)));
  if (problems.length > 0) {
    console.error(problems.join('\n\n'));
    process.exit(1);
  }
  await ensureDatabase(c.MYSQL_URL);
  const db = connectDb({ url: c.MYSQL_URL, poolSize: 1 });
  try {
    const { results } = await migrateToLatest(db);
    const applied = (results ?? []).filter((r) => r.status === 'Success').length;
    console.log(`[start] database ready${applied ? ` (${applied} migrations applied)` : ''}`);
  } finally {
    await db.destroy();
  }
}

/**
 * First run on a fresh machine: write .env from .env.example with a freshly
 * generated JWT_SECRET, so `npm start` works without editing anything.
 */
function ensureDotEnv(): void {
  // Every process reads .env from its working directory; .env.example is in the repository (above dist/ when compiled).
  const envPath = resolve('.env');
  const examplePath = fileURLToPath(new URL(ext === 'ts' ? '../.env.example' : '../../.env.example', import.meta.url));
  if (existsSync(envPath) || !existsSync(examplePath)) return;
  const secret = randomBytes(32).toString('base64url');
  const text = readFileSync(examplePath, 'utf8').replace(/^#?\s*JWT_SECRET=.*$/m, `JWT_SECRET=${secret}`);
  writeFileSync(envPath, text, { mode: 0o600 });
  console.log('[start] wrote .env with a new random JWT_SECRET (edit it to change settings)');
}
