import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import autocannon from 'autocannon';
import Bull from 'bull';
import { createPool } from 'mysql2';
import { buildApp } from '../backend/app.js';
import { loadApiConfig } from '../backend/config.js';
import { connectDb, poolOptions, serverPool } from '../db/connect.js';
import { ensureDatabase, migrateToLatest } from '../db/migrate.js';
import { createVendor, findVendor } from '../db/repos/vendors.js';
import { newId, randomToken } from '../platform/ids.js';
import { machineLine, percentile, table, writeSection } from './results.js';

/**
 * Enqueue throughput and latency (issue 5). Three servers in this process, on
 * this machine, in the same run, hit by autocannon with 20 connections:
 *
 *   bare     a Fastify route that parses the JSON body and answers 202
 *   durable  the least durability needs: one INSERT into jobs (autocommit),
 *            then Bull add, then 202
 *   enqueue  POST /api/image-queue/process-queue of the real API: JWT,
 *            validation, rate limiting (unlimited plan), the ledger
 *            transaction (group commit), Bull add, estimatedTime
 *
 * Targets: enqueue ≥ 0.8× durable req/s, enqueue p99 < 25 ms; bulk of 100
 * and 1000 items accepted in < 100 ms and < 500 ms (median of runs).
 *
 *   npm run bench -- enqueue [--duration 10] [--rounds 3] [--connections 20] [--bulk-runs 10] [--group-concurrency 2] [--dry]
 *
 * --dry prints the section instead of writing bench/RESULTS.md.
 */
const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '20' },
    'bulk-runs': { type: 'string', default: '10' },
    'group-concurrency': { type: 'string', default: '2' },
    dry: { type: 'boolean', default: false },
  },
});
const DURATION = Number(args.duration);
const ROUNDS = Number(args.rounds);
const CONNECTIONS = Number(args.connections);
const BULK_RUNS = Number(args['bulk-runs']);

const MYSQL_BASE = 'mysql://root@127.0.0.1:3306';
const REDIS_URL = 'redis://127.0.0.1:6379';
const suffix = randomBytes(4).toString('hex');
const database = `iqbench_${suffix}`;
const mysqlUrl = `${MYSQL_BASE}/${database}`;
const prefix = `iqbench${suffix}`;
const PHOTO = 'https://images.example.com/bench.jpg';
const OPERATIONS = [{ op: 'resize', width: 320 }];

interface Run {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

await ensureDatabase(mysqlUrl);
const migrationDb = connectDb({ url: mysqlUrl, poolSize: 1 });
await migrateToLatest(migrationDb);
await migrationDb.destroy();
const storageDir = await mkdtemp(join(tmpdir(), 'iqbench-storage-'));

const env = {
  NODE_ENV: 'production',
  LOG_LEVEL: 'warn',
  MYSQL_URL: mysqlUrl,
  MYSQL_POOL_SIZE: '10',
  REDIS_URL,
  BULL_PREFIX: prefix,
  STORAGE_DRIVER: 'local',
  STORAGE_LOCAL_DIR: storageDir,
  JWT_SECRET: randomBytes(24).toString('hex'),
  BULK_MAX_ITEMS_UNLIMITED: '1000',
  ENQUEUE_GROUP_CONCURRENCY: args['group-concurrency'],
};
const api = await buildApp(loadApiConfig({ env, processEnv: false }), { logger: false });
const durable = await durableServer();
const bare = await bareServer();
const servers: FastifyInstance[] = [api, durable.app, bare];

try {
  const apiUrl = await listen(api);
  const durableUrl = await listen(durable.app);
  const bareUrl = await listen(bare);
  const created = await createVendor(api.db, { name: 'bench', plan: 'unlimited' });
  const { token } = await api.signVendorToken((await findVendor(api.db, created.vendorId))!);
  const auth = `Bearer ${token}`;

  const runs: Record<'bare' | 'durable' | 'enqueue', Run[]> = { bare: [], durable: [], enqueue: [] };
  runs.bare.push(await load(`${bareUrl}/enqueue`, {}));
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate the order so neither side always runs on a fuller database.
    const order: ('durable' | 'enqueue')[] = round % 2 === 0 ? ['durable', 'enqueue'] : ['enqueue', 'durable'];
    for (const which of order) {
      runs[which].push(
        which === 'durable' ? await load(`${durableUrl}/enqueue`, {}) : await load(`${apiUrl}/api/image-queue/process-queue`, { authorization: auth }),
      );
    }
  }

  const bulk100 = await bulkLatencies(apiUrl, auth, 100, BULK_RUNS);
  const bulk1000 = await bulkLatencies(apiUrl, auth, 1000, Math.max(3, Math.ceil(BULK_RUNS / 2)));

  const med = (list: Run[], key: keyof Run) =>
    percentile(
      list.map((r) => r[key]).sort((x, y) => x - y),
      50,
    );
  const rps = { bare: med(runs.bare, 'rps'), durable: med(runs.durable, 'rps'), enqueue: med(runs.enqueue, 'rps') };
  const p99 = med(runs.enqueue, 'p99');
  const ratio = rps.enqueue / rps.durable;
  const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
  const rows = (['bare', 'durable', 'enqueue'] as const).map((which) => [
    which,
    Math.round(rps[which]),
    med(runs[which], 'p50').toFixed(1),
    med(runs[which], 'p99').toFixed(1),
    runs[which].map((r) => Math.round(r.rps)).join(' / '),
    runs[which].reduce((sum, r) => sum + r.non2xx + r.errors, 0),
  ]);
  const bulkRow = (n: number, list: number[], target: number) => {
    const sorted = [...list].sort((x, y) => x - y);
    const p50 = percentile(sorted, 50);
    return [`${n} items`, p50.toFixed(1), percentile(sorted, 95).toFixed(1), list.length, `< ${target} ms: ${verdict(p50 < target)}`];
  };
  const body = [
    `autocannon, ${CONNECTIONS} connections, ${DURATION} s per run, ${ROUNDS} rounds of durable/enqueue (alternating order), one single-job POST per request,`,
    `vendor on the \`unlimited\` plan (JWT, validation and the rate-limit hook run; no counter). MySQL pool 10 in both durable and enqueue; ENQUEUE_GROUP_CONCURRENCY=${args['group-concurrency']}.`,
    '',
    table(['route', 'req/s (median)', 'p50 ms', 'p99 ms', 'req/s per run', 'non-2xx/errors'], rows),
    '',
    `- durable / bare: ${(rps.durable / rps.bare).toFixed(2)}×`,
    `- enqueue / durable: **${ratio.toFixed(2)}×** (target ≥ 0.8×: ${verdict(ratio >= 0.8)})`,
    `- enqueue p99: **${p99.toFixed(1)} ms** (target < 25 ms: ${verdict(p99 < 25)})`,
    '',
    'Bulk (`POST /api/image-queue/bulk-process`, sequential, each a new batch):',
    '',
    table(['bulk', 'p50 ms', 'p95 ms', 'runs', 'target (p50)'], [bulkRow(100, bulk100, 100), bulkRow(1000, bulk1000, 500)]),
  ].join('\n');

  if (args.dry) console.log(`## Enqueue throughput\n\n_${machineLine()}_\n\n${body}`);
  else {
    await writeSection('enqueue', 'Enqueue throughput (issue 5)', body);
    console.log(body);
  }
} finally {
  for (const server of servers) await server.close().catch(() => undefined);
  await durable.close();
  await cleanup();
}

/** autocannon against one URL with a fresh record id per request. */
async function load(url: string, headers: Record<string, string>): Promise<Run> {
  let n = 0;
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: DURATION,
    requests: [
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        setupRequest: (request) => {
          n += 1;
          return { ...request, body: JSON.stringify({ recordId: `r-${suffix}-${n}`, projectId: 'bench', photoUrl: PHOTO, operations: OPERATIONS }) };
        },
      },
    ],
  });
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, non2xx: result.non2xx, errors: result.errors + result.timeouts };
}

async function bulkLatencies(apiUrl: string, auth: string, size: number, runs: number): Promise<number[]> {
  const times: number[] = [];
  for (let run = 0; run < runs; run++) {
    const body = JSON.stringify({
      projectId: 'bench-bulk',
      recordIds: Array.from({ length: size }, (_, i) => `b-${run}-${i}`),
      photoUrls: Array.from({ length: size }, () => PHOTO),
      operations: OPERATIONS,
    });
    const started = performance.now();
    const res = await fetch(`${apiUrl}/api/image-queue/bulk-process`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/json' },
      body,
    });
    await res.arrayBuffer();
    const ms = performance.now() - started;
    if (res.status !== 202) throw new Error(`bulk of ${size} answered ${res.status}`);
    times.push(ms);
  }
  return times;
}

function bareServer(): FastifyInstance {
  const app = Fastify({ logger: false });
  app.post('/enqueue', async (_request, reply) => reply.code(202).send({ success: true, jobId: newId() }));
  return app;
}

/** One INSERT into the ledger (autocommit, one fsync) and one Bull add: what durability needs, nothing more. */
async function durableServer(): Promise<{ app: FastifyInstance; close: () => Promise<void> }> {
  const pool = createPool(poolOptions({ url: mysqlUrl, poolSize: 10 })).promise();
  const queue = new Bull('bench-durable', REDIS_URL, { prefix });
  await queue.isReady();
  const app = Fastify({ logger: false });
  app.post('/enqueue', async (request, reply) => {
    const body = request.body as { recordId: string; projectId: string; photoUrl: string; operations: unknown };
    const id = newId();
    const options = JSON.stringify({ operations: body.operations });
    await pool.query(
      'INSERT INTO jobs (id, vendor_id, kind, project_id, record_id, source_url, options, output_prefix, status, max_attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      [id, 'bench', 'process', body.projectId, body.recordId, body.photoUrl, options, `bench/${id}-${randomToken(12)}`, 'queued', 3],
    );
    await queue.add({ jobId: id, recordId: body.recordId, source: { type: 'url', url: body.photoUrl }, options }, { jobId: id });
    return reply.code(202).send({ success: true, jobId: id });
  });
  return {
    app,
    close: async () => {
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      await pool.end();
    },
  };
}

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

async function cleanup(): Promise<void> {
  const queues = ['background-removal', 'face-crop', 'image-processing'].map((name) => new Bull(name, REDIS_URL, { prefix }));
  for (const q of queues) {
    await q.obliterate({ force: true }).catch(() => undefined);
    await q.close();
  }
  const pool = serverPool(mysqlUrl);
  await pool.promise().query(`DROP DATABASE IF EXISTS \`${database}\``);
  await pool.promise().end();
  await rm(storageDir, { recursive: true, force: true });
}
