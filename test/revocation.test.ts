import t from 'tap';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { isolatedEnv, type TestEnv } from './helpers/env.js';
import { listeningApp, testApp, testVendor } from './helpers/app.js';
import { openSse } from './helpers/sse.js';
import { waitFor } from './helpers/wait.js';
import { childEnv } from '../platform/config.js';

/**
 * Revocation (issues 18 and 20): rotating a vendor's API key or deleting the
 * vendor (`npm run vendor -- rotate-key | delete`) invalidates every token it
 * holds at once, in every API process: each caches the vendor row for a
 * minute here (VENDOR_CACHE_MS) and its verified tokens, so only the Redis
 * message the CLI publishes can make them refuse the token now; the
 * vendor's open event streams close and its held long-polls answer 401.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const run = promisify(execFile);

async function vendorCli(env: TestEnv, ...args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'scripts/vendor.ts', ...args], {
    cwd: ROOT,
    env: childEnv({ MYSQL_URL: env.MYSQL_URL as string, REDIS_URL: env.REDIS_URL as string, BULL_PREFIX: env.BULL_PREFIX as string }),
  });
  return JSON.parse(stdout.trim().split('\n').pop() as string) as Record<string, unknown>;
}

const job = (app: FastifyInstance, token: string, jobId: string) =>
  app.inject({ url: `/api/image-queue/job/${jobId}`, headers: { authorization: `Bearer ${token}` } });

t.test('rotating the key: the same token is refused at once by every API process, its stream closed and its long-poll ended', async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent', VENDOR_CACHE_MS: '60000' });
  const { app: first, url } = await listeningApp(t, env);
  const second = await testApp(t, env);
  const vendor = await testVendor(first);
  const bystander = await testVendor(first, { name: 'Bystander' });
  const browser = (
    await first.inject({ method: 'POST', url: '/api/auth/token', payload: { apiKey: vendor.apiKey, scope: 'jobs:read', projectId: 'p' } })
  ).json().token as string;

  const queued = await first.inject({
    method: 'POST',
    url: '/api/image-queue/remove-bg-queue',
    headers: vendor.auth,
    payload: { projectId: 'p', recordId: 'r1', photoUrl: 'https://example.com/a.png' },
  });
  t.equal(queued.statusCode, 202, queued.body);
  const jobId = queued.json().jobId as string;
  const otherJob = (
    await first.inject({
      method: 'POST',
      url: '/api/image-queue/remove-bg-queue',
      headers: bystander.auth,
      payload: { projectId: 'p', recordId: 'r1', photoUrl: 'https://example.com/a.png' },
    })
  ).json().jobId as string;

  // Both processes have the vendor row and the tokens cached.
  for (const app of [first, second]) {
    t.equal((await job(app, vendor.token, jobId)).statusCode, 200);
    t.equal((await job(app, browser, jobId)).statusCode, 200);
  }
  const stream = await openSse(t, `${url}/api/image-queue/events`, vendor.auth);
  await stream.next((m) => m.event === 'ready');
  const bystanderStream = await openSse(t, `${url}/api/image-queue/events`, bystander.auth);
  await bystanderStream.next((m) => m.event === 'ready');
  const held = job(second, browser, `${jobId}?wait=30`);
  const bystanderHeld = job(second, bystander.token, `${otherJob}?wait=30`);
  await waitFor(async () => second.jobStatus.waiting(vendor.vendorId) === 1 && second.jobStatus.waiting(bystander.vendorId) === 1);

  const started = Date.now();
  const rotated = await vendorCli(env, 'rotate-key', '--id', vendor.vendorId);
  t.equal(rotated.tokensRevoked, 'now', 'the CLI told the API processes over Redis');
  t.not(rotated.apiKey, vendor.apiKey);

  await stream.closed;
  t.pass(`the open event stream was closed (${Date.now() - started} ms after the rotation began)`);
  const answer = await held;
  t.equal(answer.statusCode, 401, 'the held long-poll answers 401 in the other process');
  t.match(answer.json().message, /revoked/);
  t.ok(Date.now() - started < 20_000, 'long before its 30 s wait');

  for (const [name, app] of [
    ['the process that streamed', first],
    ['a second process sharing Redis', second],
  ] as const) {
    for (const token of [vendor.token, browser]) {
      const res = await job(app, token, jobId);
      t.equal(res.statusCode, 401, `${name}: 401 within its 60 s vendor cache`);
      t.match(res.json().message, /revoked/);
    }
  }
  const reopened = await fetch(`${url}/api/image-queue/events`, { headers: vendor.auth });
  t.equal(reopened.status, 401, 'the stream cannot be opened again with the old token');
  await reopened.body?.cancel();

  const renewed = await first.inject({ method: 'POST', url: '/api/auth/token', payload: { apiKey: rotated.apiKey } });
  t.equal(renewed.statusCode, 200);
  t.equal((await job(second, renewed.json().token as string, jobId)).statusCode, 200, 'a token of the new key works everywhere');
  t.equal((await first.inject({ method: 'POST', url: '/api/auth/token', payload: { apiKey: vendor.apiKey } })).statusCode, 401, 'the old key is gone');

  t.equal(second.jobStatus.waiting(bystander.vendorId), 1, "another vendor's long-poll is still held");
  t.equal(first.eventHub.streams(bystander.vendorId), 1, 'and its stream still open');
  t.equal((await job(second, bystander.token, otherJob)).statusCode, 200, 'and its token still good');
  bystanderStream.close();
  void bystanderHeld; // ends when the app closes at teardown
});

t.test('deleting the vendor revokes its tokens at once too', async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent', VENDOR_CACHE_MS: '60000' });
  const first = await testApp(t, env);
  const second = await testApp(t, env);
  const vendor = await testVendor(first);
  for (const app of [first, second]) t.equal((await app.inject({ url: '/api/image-queue/jobs', headers: vendor.auth })).statusCode, 200);
  const deleted = await vendorCli(env, 'delete', '--id', vendor.vendorId);
  t.match(deleted, { deleted: true, tokensRevoked: 'now' });
  for (const app of [first, second]) {
    // The message may reach a process a moment after the CLI exits: the cache is a minute long, so a 401 before that is the message's doing.
    await waitFor(async () => (await app.inject({ url: '/api/image-queue/jobs', headers: vendor.auth })).statusCode === 401);
    t.ok(true, 'refused well within VENDOR_CACHE_MS');
  }
});
