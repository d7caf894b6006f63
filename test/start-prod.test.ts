import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { childEnv } from '../platform/config.js';
import { heartbeatKey } from '../jobs/heartbeat.js';
import { isolatedEnv } from './helpers/env.js';
import { freePort } from './helpers/private-services.js';
import { waitFor } from './helpers/wait.js';

/**
 * `npm run build` then `npm run start:prod`: the compiled launcher runs the
 * compiled API and worker with plain node (no tsx loader, which is a
 * devDependency), finds web/ beside dist/, and stops cleanly on SIGTERM.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));

t.test('the compiled build starts the service with plain node', async (t) => {
  const build = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8' });
  t.equal(build.status, 0, `npm run build: ${build.stdout}${build.stderr}`);
  t.ok(existsSync(`${ROOT}dist/scripts/start.js`), 'dist/scripts/start.js is built');

  const env = await isolatedEnv(t);
  const port = await freePort();
  const cwd = t.testdir();
  const launcher = spawn(process.execPath, [`${ROOT}dist/scripts/start.js`], {
    cwd,
    // REMBG_URLS set: no local rembg instances (their model load is the rembg tests' business)
    env: childEnv({ ...env, PORT: String(port), REMBG_URLS: 'http://127.0.0.1:9', WORKER_PROCESSES: '1', SHUTDOWN_GRACE_MS: '1000' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  launcher.stdout.on('data', (d: Buffer) => (output += d.toString()));
  launcher.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => launcher.once('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (launcher.exitCode === null) launcher.kill('SIGKILL');
  });
  t.notMatch(launcher.spawnargs.join(' '), /tsx/, 'no TypeScript loader');

  const api = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    if (launcher.exitCode !== null) throw new Error(`the launcher exited:\n${output}`);
    return (await fetch(`${api}/healthz`).catch(() => null))?.ok;
  }, 60_000);
  t.equal((await fetch(`${api}/dashboard/`)).status, 200, "the dashboard's files are found beside dist/");
  const redis = new Redis(env['REDIS_URL']!);
  t.teardown(() => redis.disconnect());
  await waitFor(async () => (await redis.keys(heartbeatKey(env['BULL_PREFIX']!, '*'))).length === 1, 60_000);
  t.pass('the compiled worker serves its queues (its heartbeat is in Redis)');

  launcher.kill('SIGTERM');
  t.equal(await exited, 0, `the launcher stops everything cleanly:\n${output}`);
  t.notMatch(output, /ERR_UNKNOWN_FILE_EXTENSION|Cannot find module/);
});
