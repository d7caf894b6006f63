import t from 'tap';
import { sql } from 'kysely';
import { isolatedEnv } from './helpers/env.js';
import { waitFor } from './helpers/wait.js';
import { connectDb } from '../db/connect.js';
import { BUILTIN_KINDS } from '../jobs/kinds.js';
import { createLogger } from '../platform/logger.js';
import { openQueues } from '../platform/queues.js';
import { createRedis } from '../platform/redis.js';
import { redisLock } from '../platform/redis-lock.js';
import { reconcile, reconcileLockKey, type ReconcileResult } from '../worker/reconciler.js';

/**
 * The reconciler's run against a backlog of lost jobs (ledger rows Redis has
 * never seen): it reads the backlog in index order, so the rows MariaDB reads
 * grow with the backlog, not with its square; and one run at a time holds the
 * lock, renewed for as long as the run lasts, however short its TTL.
 */
const BACKLOG = 4000;
const PAGE = 50;

t.test('a run reads each open row about once, re-queues every lost job, and holds the lock for as long as it lasts', async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent' });
  // One connection, so the session's handler counters are this walk's.
  const db = connectDb({ url: env['MYSQL_URL']!, poolSize: 1 });
  t.teardown(() => db.destroy());
  const old = new Date(Date.now() - 3_600_000);
  await sql`
    INSERT INTO jobs (id, vendor_id, kind, project_id, record_id, source_url, options, output_prefix, status, max_attempts, updated_at)
    SELECT LPAD(seq, 26, '0'), 'V0000000000000000000000001', 'process', 'p', CONCAT('r', seq), 'http://127.0.0.1:9/p.jpg',
           '{"operations":[]}', CONCAT('out/', seq), IF(seq % 10 = 0, 'active', 'queued'), 3, ${old} - INTERVAL (seq % 7) SECOND
    FROM seq_1_to_${sql.raw(String(BACKLOG))}`.execute(db);
  // Finished jobs the walk must not read through.
  await sql`
    INSERT INTO jobs (id, vendor_id, kind, project_id, record_id, options, output_prefix, status, max_attempts, updated_at)
    SELECT CONCAT('F', LPAD(seq, 25, '0')), 'V0000000000000000000000001', 'process', 'p', CONCAT('f', seq), '{}', 'out', 'completed', 3, ${old}
    FROM seq_1_to_${sql.raw(String(BACKLOG))}`.execute(db);
  await sql`ANALYZE TABLE jobs`.execute(db);

  const redis = createRedis(env['REDIS_URL']!, { maxRetriesPerRequest: null });
  t.teardown(() => redis.quit());
  const queueSet = openQueues({
    redisUrl: env['REDIS_URL']!,
    prefix: env['BULL_PREFIX']!,
    connectionName: 'reconciler-test',
    attempts: 3,
    backoffMs: 200,
    keepCompleted: 10,
    keepFailed: 10,
  });
  t.teardown(async () => {
    await Promise.all(Object.values(queueSet.queues).map((q) => q.obliterate({ force: true }).catch(() => undefined)));
    await queueSet.close();
  });
  const log = createLogger('silent', 'test');
  const key = reconcileLockKey(env['BULL_PREFIX']!);
  // Renewed every 80 ms: the run survives a loaded machine's event-loop stalls of up to 320 ms.
  const ttlMs = 400;
  const lock = redisLock(redis, key, { ttlMs, renewEveryMs: 80 });

  const handlerReads = async () => {
    const { rows } = await sql<{ Variable_name: string; Value: string }>`SHOW SESSION STATUS LIKE 'Handler_read%'`.execute(db);
    return rows.reduce((sum, r) => sum + Number(r.Value), 0);
  };
  const before = await handlerReads();
  const started = Date.now();
  const run = reconcile(db, queueSet.queues, BUILTIN_KINDS, log, 1000, lock, PAGE);
  let settled = false;
  void run.then(
    () => (settled = true),
    () => (settled = true),
  );
  await waitFor(async () => settled || (await redis.exists(key)) === 1, 10_000, 5);
  // While it runs, well past its lock's TTL, every other run stands aside.
  const others: ReconcileResult[] = [];
  const otherRedis = createRedis(env['REDIS_URL']!, { maxRetriesPerRequest: null });
  t.teardown(() => otherRedis.quit());
  while (!settled) {
    const other = await reconcile(db, queueSet.queues, BUILTIN_KINDS, log, 1000, redisLock(otherRedis, key, { ttlMs }), PAGE);
    // A try still going when the run let go of the lock may rightly take it: only tries over while the run held it count.
    if (!settled) others.push(other);
  }
  const result = await run;
  const elapsed = Date.now() - started;
  const reads = (await handlerReads()) - before;

  t.same(result, { checked: BACKLOG, requeued: BACKLOG, ran: true }, 'every lost job re-queued');
  t.equal(await queueSet.queues['image-processing'].count(), BACKLOG, 'all of them waiting in Bull');
  t.ok(elapsed > 2 * ttlMs, `the run lasted ${elapsed} ms, more than twice the lock's ${ttlMs} ms TTL`);
  t.ok(others.length > 0, `${others.length} other runs tried meanwhile`);
  t.ok(
    others.every((o) => !o.ran),
    'none of them ran',
  );
  t.equal(await redis.exists(key), 0, 'the lock is released after the run');
  // Paging by id over an IN (queued, active) range sorted the whole backlog for each page: ~BACKLOG²/PAGE reads.
  // Index order reads each row about once (plus the other runs' nothing and a probe per page).
  t.ok(reads < 3 * BACKLOG, `MariaDB read ${reads} index/table rows for a backlog of ${BACKLOG} (quadratic would be ~${(BACKLOG * BACKLOG) / PAGE})`);

  const again = await reconcile(db, queueSet.queues, BUILTIN_KINDS, log, 1000, lock, PAGE);
  t.same(again, { checked: BACKLOG, requeued: 0, ran: true }, 'a second run finds them all in Bull');
});
