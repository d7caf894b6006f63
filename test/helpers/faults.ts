import type { Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { connectDb, type Db } from '../../db/connect.js';
import { ensureDatabase, migrateToLatest } from '../../db/migrate.js';
import { isolatedEnv, type TestEnv } from './env.js';
import { testApp, testVendor, type TestVendor } from './app.js';
import { testWorker } from './worker.js';
import { spawnWorker } from './worker-process.js';
import { freePort, privateMariadb, privateRedis } from './private-services.js';
import { createServer } from 'node:http';
import sharp from 'sharp';
import { slowProxy, spawnRembg } from './rembg.js';
import { readFixture } from './fixtures.js';
import { serveBytes, testServer, type TestServer } from './http.js';
import { fakeCloudinary } from './cloudinary.js';
import { makeJpeg } from './fixtures.js';
import { waitFor } from './wait.js';

/**
 * Fault scenarios shared by the CI tests (test/faults.test.ts, small
 * numbers) and the chaos bench (bench/chaos.ts, large ones). Each runs the
 * real API and workers against real (private where they are broken) MySQL
 * and Redis, breaks one thing while jobs run, and reports what became of
 * every accepted job, from the ledger: completed, failed (a final, reported
 * failure), lost (accepted but never finished: must be 0), duplicated
 * (completed more than once: must be 0).
 *
 * `scope` is a tap Test, or anything with `teardown` (the bench).
 */
export type Scope = Pick<Test, 'teardown'>;

export interface FaultOutcome {
  scenario: string;
  accepted: number;
  completed: number;
  failed: number;
  lost: number;
  duplicated: number;
  notes: string;
  /** failure codes seen, with counts */
  codes: Record<string, number>;
  /** scenario-specific measurements */
  extra: Record<string, number | string | boolean>;
}

/** The helpers that take a tap Test use only its teardown. */
export const asTest = (scope: Scope) => scope as Test;

/** The fate of each job, from the ledger, once every one is final or `timeoutMs` passed. */
export async function ledgerOutcome(db: Db, jobIds: readonly string[], timeoutMs: number): Promise<Omit<FaultOutcome, 'scenario' | 'notes' | 'extra'>> {
  const final = new Set(['completed', 'failed', 'dead']);
  const rows = async () => (jobIds.length === 0 ? [] : await db.selectFrom('jobs').select(['id', 'status', 'error_code']).where('id', 'in', jobIds).execute());
  await waitFor(async () => (await rows()).every((r) => final.has(r.status)), timeoutMs, 250).catch(() => undefined);
  const jobs = await rows();
  const completions =
    jobIds.length === 0
      ? []
      : await db
          .selectFrom('job_attempts')
          .select(['job_id', (eb) => eb.fn.countAll<number>().as('n')])
          .where('outcome', '=', 'completed')
          .where('job_id', 'in', jobIds)
          .groupBy('job_id')
          .execute();
  const codes: Record<string, number> = {};
  for (const j of jobs) if (j.status !== 'completed' && j.error_code) codes[j.error_code] = (codes[j.error_code] ?? 0) + 1;
  const completed = jobs.filter((j) => j.status === 'completed').length;
  const failed = jobs.filter((j) => j.status === 'failed' || j.status === 'dead').length;
  return {
    accepted: jobIds.length,
    completed,
    failed,
    lost: jobIds.length - completed - failed,
    duplicated: completions.filter((c) => Number(c.n) > 1).length,
    codes,
  };
}

export async function completedCount(db: Db, jobIds: readonly string[]): Promise<number> {
  const row = await db
    .selectFrom('jobs')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('id', 'in', jobIds)
    .where('status', '=', 'completed')
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** One bulk request of `count` resizes of `url` (split in requests of at most 1000). */
export async function bulkResize(app: FastifyInstance, vendor: TestVendor, url: string, count: number, prefix = 'rec'): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < count; start += 1000) {
    const items = Array.from({ length: Math.min(1000, count - start) }, (_, i) => ({ recordId: `${prefix}-${start + i}`, photoUrl: url }));
    const res = await app.inject({
      method: 'POST',
      url: '/api/image-queue/bulk-process',
      headers: vendor.auth,
      payload: { projectId: 'chaos', items, operations: [{ op: 'resize', width: 8 }] },
    });
    if (res.statusCode !== 202) throw new Error(`bulk enqueue failed: ${res.statusCode} ${res.body}`);
    ids.push(...(res.json() as { jobIds: string[] }).jobIds);
  }
  return ids;
}

/** A source image server whose answers take `delayMs`, so jobs are in flight when the fault strikes. */
async function slowImages(scope: Scope, delayMs: number): Promise<{ server: TestServer; url: string }> {
  const server = await testServer(asTest(scope));
  const jpeg = await makeJpeg(32, 24);
  server.route('/p.jpg', (req, res) => {
    setTimeout(() => {
      if (!res.destroyed) serveBytes(jpeg, 'image/jpeg')(req, res, Buffer.alloc(0));
    }, delayMs);
  });
  return { server, url: `${server.url}/p.jpg` };
}

/**
 * SIGKILL a worker process in the middle of a bulk, start another: every
 * job ends `completed`, exactly once. Short Bull locks make the dead
 * worker's jobs stalled (and taken over) within seconds.
 */
export async function killWorkerMidBulk(scope: Scope, options: { jobs: number; concurrency?: number; killAfter?: number }): Promise<FaultOutcome> {
  const env = await isolatedEnv(asTest(scope), {
    WORKER_QUEUES: 'image-processing',
    CONCURRENCY_IMAGE_PROCESSING: String(options.concurrency ?? 4),
    LOCK_DURATION_MS: '2000',
    STALLED_INTERVAL_MS: '1000',
    RECONCILE_INTERVAL_MS: '0',
    LOG_LEVEL: 'error',
  });
  const app = await testApp(asTest(scope), env);
  const vendor = await testVendor(app);
  // Fetches after the first `killAfter` are held until the kill, so that
  // worker A dies with jobs really in flight (mid-fetch) on any machine.
  const killAfter = options.killAfter ?? Math.floor(options.jobs / 4);
  const server = await testServer(asTest(scope));
  const jpeg = await makeJpeg(32, 24);
  let fetches = 0;
  let held = 0;
  let gateOpen = false;
  server.route('/p.jpg', (req, res) => {
    if (++fetches <= killAfter || gateOpen) serveBytes(jpeg, 'image/jpeg')(req, res, Buffer.alloc(0));
    else held++;
  });
  const jobIds = await bulkResize(app, vendor, `${server.url}/p.jpg`, options.jobs);
  const a = await spawnWorker(asTest(scope), env, 'chaos-a');
  await waitFor(async () => held > 0 && (await completedCount(app.db, jobIds)) >= killAfter, 120_000, 50);
  await new Promise((r) => setTimeout(r, 200));
  const active = await app.db.selectFrom('jobs').select('id').where('id', 'in', jobIds).where('status', '=', 'active').execute();
  const doneAtKill = await completedCount(app.db, jobIds);
  a.child.kill('SIGKILL');
  await a.exited;
  gateOpen = true;
  const startedAt = Date.now();
  await spawnWorker(asTest(scope), env, 'chaos-b');
  const outcome = await ledgerOutcome(app.db, jobIds, 180_000);
  return {
    scenario: `SIGKILL a worker mid-bulk (${options.jobs} jobs), start another`,
    ...outcome,
    notes: `killed with ${doneAtKill} done and ${active.length} in flight; the rest finished ${((Date.now() - startedAt) / 1000).toFixed(0)} s after (new worker start included)`,
    extra: { inFlightAtKill: active.length, doneAtKill },
  };
}

/**
 * Redis loses every job (FLUSHALL, or a restart without persistence) while
 * a worker is busy: the reconciler re-queues what the ledger still has open.
 */
export async function loseRedis(scope: Scope, options: { jobs: number; mode: 'flush' | 'restart' }): Promise<FaultOutcome> {
  const redis = await privateRedis(asTest(scope));
  const env = await isolatedEnv(asTest(scope), {
    REDIS_URL: redis.url,
    WORKER_QUEUES: 'image-processing',
    RECONCILE_INTERVAL_MS: '1000',
    RECONCILE_GRACE_MS: '1000',
    LOG_LEVEL: 'silent',
  });
  const app = await testApp(asTest(scope), env);
  const vendor = await testVendor(app);
  const images = await slowImages(scope, 20);
  const jobIds = await bulkResize(app, vendor, images.url, options.jobs);
  await testWorker(asTest(scope), env);
  await waitFor(async () => (await completedCount(app.db, jobIds)) >= Math.max(1, Math.floor(options.jobs / 10)), 120_000, 50);
  const doneAtFault = await completedCount(app.db, jobIds);
  if (options.mode === 'flush') {
    const client = new Redis(redis.url);
    await client.flushall();
    client.disconnect();
  } else {
    await redis.stop();
    await redis.start();
  }
  const client = new Redis(redis.url);
  const keysAfter = await client.dbsize();
  client.disconnect();
  const outcome = await ledgerOutcome(app.db, jobIds, 180_000);
  return {
    scenario: options.mode === 'flush' ? `Redis FLUSHALL mid-run (${options.jobs} jobs)` : `Redis restarted without persistence mid-run (${options.jobs} jobs)`,
    ...outcome,
    notes: `${doneAtFault} done when Redis lost everything; the reconciler re-queued the rest from the ledger`,
    extra: { doneAtFault, keysRightAfter: keysAfter },
  };
}

/**
 * MySQL stopped for `downMs` while jobs run: the API answers enqueue
 * requests 503 at once (measured), the workers retry their ledger writes,
 * and once MySQL is back every job completes, once, with one record each.
 */
export async function stopMysql(scope: Scope, options: { jobs: number; downMs: number; probes?: number }): Promise<FaultOutcome> {
  const mariadb = await privateMariadb(asTest(scope));
  const mysqlUrl = `${mariadb.url}/iq`;
  await ensureDatabase(mysqlUrl);
  const migrator = connectDb({ url: mysqlUrl, poolSize: 1 });
  await migrateToLatest(migrator);
  await migrator.destroy();
  const env: TestEnv = await isolatedEnv(asTest(scope), {
    MYSQL_URL: mysqlUrl,
    WORKER_QUEUES: 'image-processing',
    CONCURRENCY_IMAGE_PROCESSING: '3',
    DB_WRITE_RETRY_MS: String(options.downMs + 30_000),
    RECONCILE_INTERVAL_MS: '1000',
    LOG_LEVEL: 'silent',
  });
  const app = await testApp(asTest(scope), env);
  const vendor = await testVendor(app);
  const images = await slowImages(scope, 300);
  const jobIds = await bulkResize(app, vendor, images.url, options.jobs);
  await testWorker(asTest(scope), env);
  await waitFor(async () => (await completedCount(app.db, jobIds)) >= 1, 60_000, 50);

  const doneAtStop = await completedCount(app.db, jobIds);
  await mariadb.stop();
  const stoppedAt = Date.now();
  const probes: { status: number; ms: number; code: string }[] = [];
  const probeCount = options.probes ?? 5;
  for (let i = 0; i < probeCount; i++) {
    const started = performance.now();
    const res = await app.inject({
      method: 'POST',
      url: '/api/image-queue/process-queue',
      headers: vendor.auth,
      payload: { recordId: `during-${i}`, projectId: 'chaos', photoUrl: images.url, operations: [{ op: 'resize', width: 8 }] },
    });
    probes.push({ status: res.statusCode, ms: performance.now() - started, code: String(res.json().code ?? '') });
    const readStarted = performance.now();
    const read = await app.inject({ method: 'GET', url: `/api/image-queue/job/${jobIds[0]}`, headers: vendor.auth });
    probes.push({ status: read.statusCode, ms: performance.now() - readStarted, code: String(read.json().code ?? '') });
    await new Promise((r) => setTimeout(r, Math.min(1000, options.downMs / (probeCount + 1))));
  }
  const remaining = options.downMs - (Date.now() - stoppedAt);
  if (remaining > 0) await new Promise((r) => setTimeout(r, remaining));
  await mariadb.start();

  const outcome = await ledgerOutcome(app.db, jobIds, 180_000);
  const records = await app.db
    .selectFrom('data_records')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('vendor_id', '=', vendor.vendorId)
    .executeTakeFirstOrThrow();
  const slowest = Math.max(...probes.map((p) => p.ms));
  const all503 = probes.every((p) => p.status === 503 && p.code === 'SERVICE_UNAVAILABLE');
  return {
    scenario: `MySQL stopped ${Math.round(options.downMs / 1000)} s while ${options.jobs} jobs run`,
    ...outcome,
    notes: `${doneAtStop} done at the stop; while down, ${probes.filter((p) => p.status === 503).length} of ${probes.length} POSTs and status reads answered 503 (others: ${
      probes
        .filter((p) => p.status !== 503)
        .map((p) => p.status)
        .join(', ') || 'none'
    }), slowest ${slowest.toFixed(0)} ms; ${Number(records.n)} records for ${options.jobs} jobs`,
    extra: { doneAtStop, probesAll503: all503, slowestProbeMs: Math.round(slowest), records: Number(records.n) },
  };
}

/**
 * Storage (the Cloudinary stand-in) answering 500s: uploads are retried
 * within the attempt, attempts are retried by Bull, a job that never gets
 * its result stored is dead-lettered with STORAGE_FAILED, and nothing of it
 * is written to the records. `recoverAfter` uploads fail and then storage
 * works again (those jobs must complete); with `recoverAfter` < 0 it never does.
 */
export async function failingStorage(scope: Scope, options: { jobs: number; recoverAfter: number }): Promise<FaultOutcome> {
  const fake = await fakeCloudinary(asTest(scope));
  fake.state.failNext = options.recoverAfter;
  const env = await isolatedEnv(asTest(scope), {
    WORKER_QUEUES: 'image-processing',
    STORAGE_DRIVER: 'auto',
    CLOUDINARY_URL: fake.url,
    STORAGE_RETRIES: '1',
    JOB_BACKOFF_MS: '100',
    LOG_LEVEL: 'silent',
  });
  const app = await testApp(asTest(scope), { ...env, CLOUDINARY_URL: '' });
  const vendor = await testVendor(app);
  const images = await slowImages(scope, 0);
  const jobIds = await bulkResize(app, vendor, images.url, options.jobs);
  await testWorker(asTest(scope), env);
  const outcome = await ledgerOutcome(app.db, jobIds, 180_000);
  const failedIds = (await app.db.selectFrom('jobs').select('id').where('id', 'in', jobIds).where('status', 'in', ['failed', 'dead']).execute()).map(
    (r) => r.id,
  );
  const partialResults =
    failedIds.length === 0 ? 0 : (await app.db.selectFrom('job_result_fields').select('job_id').where('job_id', 'in', failedIds).execute()).length;
  const partialRecords = (
    await app.db
      .selectFrom('data_records')
      .select('record_id')
      .where('vendor_id', '=', vendor.vendorId)
      .where((eb) => eb.or([eb('processed_photo_url', 'is not', null), eb('processing_status', '=', 'completed')]))
      .where('last_job_id', 'in', failedIds.length > 0 ? failedIds : ['-'])
      .execute()
  ).length;
  const letters = failedIds.length === 0 ? 0 : (await app.db.selectFrom('dead_letters').select('job_id').where('job_id', 'in', failedIds).execute()).length;
  const sample = failedIds[0] ? await app.db.selectFrom('jobs').select('error_message').where('id', '=', failedIds[0]).executeTakeFirst() : undefined;
  const uploadsTried = fake.server.hits.get(`/v1_1/demo-cloud/image/upload`) ?? 0;
  return {
    scenario:
      options.recoverAfter < 0
        ? `Storage answering 500 to every upload (${options.jobs} jobs)`
        : `Storage answering 500 to the first ${options.recoverAfter} uploads (${options.jobs} jobs)`,
    ...outcome,
    notes: `${uploadsTried} upload requests; ${letters} dead letters; ${partialResults + partialRecords} partial results or records${sample?.error_message ? `; error: "${sample.error_message.slice(0, 120)}"` : ''}`,
    extra: { uploadsTried, deadLetters: letters, partialResults, partialRecords, errorMessage: sample?.error_message ?? '' },
  };
}

/**
 * The vendor's webhook receiver is down (nothing listens on its port) while
 * jobs complete, for `downMs`, then comes up: every completed job's event is
 * delivered once it answers, each retried try logged. Lost = jobs whose
 * event never arrived (plus any job not final).
 */
export async function webhookReceiverDown(scope: Scope, options: { jobs: number; downMs: number }): Promise<FaultOutcome> {
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const env = await isolatedEnv(asTest(scope), {
    WORKER_QUEUES: 'image-processing',
    WEBHOOK_ALLOWED_PRIVATE_HOSTS: host,
    ALLOW_HTTP_WEBHOOKS: 'true',
    WEBHOOK_BACKOFF_MS: '200',
    WEBHOOK_OUTBOX_INTERVAL_MS: '100',
    WEBHOOK_TIMEOUT_MS: '2000',
    LOG_LEVEL: 'silent',
  });
  const app = await testApp(asTest(scope), env);
  const vendor = await testVendor(app);
  const set = await app.inject({ method: 'PUT', url: '/api/webhooks', headers: vendor.auth, payload: { webhookUrl: `http://${host}/hook` } });
  if (set.statusCode !== 200) throw new Error(`webhook setup failed: ${set.statusCode} ${set.body}`);
  const images = await slowImages(scope, 0);
  const jobIds = await bulkResize(app, vendor, images.url, options.jobs);
  await testWorker(asTest(scope), env);
  const downSince = Date.now();
  const failedTries = async () =>
    Number(
      (
        await app.db
          .selectFrom('webhook_deliveries')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('vendor_id', '=', vendor.vendorId)
          .where('outcome', '=', 'failed')
          .executeTakeFirstOrThrow()
      ).n,
    );
  await waitFor(async () => (await failedTries()) > 0, 60_000, 100);
  const remaining = options.downMs - (Date.now() - downSince);
  if (remaining > 0) await new Promise((r) => setTimeout(r, remaining));
  const triesWhileDown = await failedTries();

  const delivered = new Map<string, number>();
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const event = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { type?: string; job?: { jobId?: string } };
      const jobId = event.job?.jobId;
      if (jobId) delivered.set(jobId, (delivered.get(jobId) ?? 0) + 1);
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(port, '127.0.0.1', resolve));
  scope.teardown(() => new Promise<void>((resolve) => (receiver.closeAllConnections(), receiver.close(() => resolve()))));
  const upAt = Date.now();
  const outcome = await ledgerOutcome(app.db, jobIds, 120_000);
  await waitFor(async () => jobIds.every((id) => delivered.has(id)), 120_000, 100).catch(() => undefined);
  const undelivered = jobIds.filter((id) => !delivered.has(id)).length;
  const repeats = [...delivered.values()].filter((n) => n > 1).length;
  return {
    scenario: `Webhook receiver down ${Math.round(options.downMs / 1000)} s while ${options.jobs} jobs complete`,
    ...outcome,
    lost: outcome.lost + undelivered,
    notes: `${triesWhileDown} failed tries logged while down; ${jobIds.length - undelivered} of ${jobIds.length} events delivered within ${((Date.now() - upAt) / 1000).toFixed(0)} s of the receiver coming up${repeats > 0 ? `, ${repeats} more than once (at-least-once)` : ''}`,
    extra: { triesWhileDown, undelivered, repeats },
  };
}

/**
 * Three rembg instances (real processes), one behind a slow link (every
 * call delayed `slowMs`), and another SIGKILLed once a fifth of the
 * background-removal jobs are done: the pool routes around both, no job fails.
 */
export async function rembgInstancesFail(scope: Scope, options: { jobs: number; slowMs?: number }): Promise<FaultOutcome> {
  const instances = [];
  // one after another: three model loads at once on two cores only make each slower
  for (let i = 0; i < 3; i++) instances.push(await spawnRembg(asTest(scope), { REMBG_CONCURRENCY: '2', REMBG_QUEUE: '8' }));
  const [healthy, doomed, slowed] = instances as [(typeof instances)[0], (typeof instances)[0], (typeof instances)[0]];
  const slowMs = options.slowMs ?? 1500;
  const slowUrl = await slowProxy(scope, slowed.url, slowMs);
  const env = await isolatedEnv(asTest(scope), {
    LOG_LEVEL: 'silent',
    WORKER_QUEUES: 'background-removal',
    CONCURRENCY_BACKGROUND_REMOVAL: '6',
    REMBG_URLS: [healthy.url, doomed.url, slowUrl].join(','),
    REMBG_HEALTH_INTERVAL_MS: '300',
    REMBG_OPEN_MS: '1000',
    REMBG_WAIT_MS: '2000',
    JOB_BACKOFF_MS: '1000',
    JOB_TIMEOUT_MS: '120000',
  });
  const app = await testApp(asTest(scope), env);
  const vendor = await testVendor(app);
  const images = await testServer(asTest(scope));
  images.route(
    '/car.jpg',
    serveBytes(
      await sharp(await readFixture('rembg/car-1.jpg'))
        .resize(160)
        .jpeg()
        .toBuffer(),
      'image/jpeg',
    ),
  );
  const jobIds: string[] = [];
  for (let start = 0; start < options.jobs; start += 1000) {
    const items = Array.from({ length: Math.min(1000, options.jobs - start) }, (_, i) => ({ recordId: `cut-${start + i}`, photoUrl: `${images.url}/car.jpg` }));
    const res = await app.inject({ method: 'POST', url: '/api/image-queue/bulk-remove-bg', headers: vendor.auth, payload: { projectId: 'chaos', items } });
    if (res.statusCode !== 202) throw new Error(`bulk remove-bg failed: ${res.statusCode} ${res.body}`);
    jobIds.push(...(res.json() as { jobIds: string[] }).jobIds);
  }
  await testWorker(asTest(scope), env);
  await waitFor(async () => (await completedCount(app.db, jobIds)) >= Math.max(1, Math.floor(options.jobs / 5)), 240_000, 100);
  const doneAtKill = await completedCount(app.db, jobIds);
  await doomed.kill();
  const outcome = await ledgerOutcome(app.db, jobIds, 300_000);
  const retried = await app.db.selectFrom('jobs').select('id').where('id', 'in', jobIds).where('attempts', '>', 1).execute();
  return {
    scenario: `rembg ×3: one SIGKILLed mid-run, one ${slowMs} ms slower per call (${options.jobs} background removals)`,
    ...outcome,
    notes: `killed with ${doneAtKill} done; ${retried.length} jobs needed a second attempt (the rest were retried on another instance within their attempt)`,
    extra: { doneAtKill, secondAttempts: retried.length },
  };
}
