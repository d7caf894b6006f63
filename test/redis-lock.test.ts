import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { REDIS_URL } from './helpers/env.js';
import { waitFor } from './helpers/wait.js';
import { redisLock } from '../platform/redis-lock.js';
import { TimeoutError, withTimeout } from '../platform/timeout.js';

/**
 * platform/redis-lock.ts against the machine's real Redis: one holder at a
 * time, a lease that expires when its holder stops renewing, renewal that
 * keeps it past its TTL, and a release that never deletes another holder's
 * lock.
 */
function client(t: Test): Redis {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  t.teardown(() => redis.disconnect());
  return redis;
}

function freshKey(t: Test): string {
  const key = `iqt-lock-${randomBytes(6).toString('hex')}`;
  t.teardown(async () => {
    const r = new Redis(REDIS_URL);
    await r.del(key);
    r.disconnect();
  });
  return key;
}

t.test('contention: of many processes asking at once, exactly one holds the lock; it is free again after release', async (t) => {
  const key = freshKey(t);
  const clients = Array.from({ length: 8 }, () => client(t));
  const held = await Promise.all(clients.map((c) => redisLock(c, key, { ttlMs: 10_000 }).acquire()));
  const winners = held.filter((h) => h !== null);
  t.equal(winners.length, 1, 'one holder');
  const winner = winners[0]!;
  t.equal(await clients[0]!.get(key), winner.token, 'the key holds the winner token');

  const other = redisLock(clients[1]!, key, { ttlMs: 10_000 });
  let ran = false;
  t.same(
    await other.run(async () => {
      ran = true;
    }),
    { ran: false },
    'run stands aside while the lock is held',
  );
  t.notOk(ran, 'the work did not run');

  t.equal(await winner.release(), true, 'the holder released it');
  t.ok(winner.signal.aborted, 'released: the signal is aborted');
  t.notOk(winner.lost(), 'released is not lost');
  t.equal(await clients[0]!.exists(key), 0, 'the key is gone');
  const result = await other.run(async (h) => {
    t.equal(await clients[0]!.get(key), h.token, 'the second holder holds it during its run');
    return 42;
  });
  t.same(result, { ran: true, value: 42 });
  t.equal(await clients[0]!.exists(key), 0, 'run released it after the work');
});

t.test('run releases the lock when the work throws', async (t) => {
  const key = freshKey(t);
  const lock = redisLock(client(t), key, { ttlMs: 10_000 });
  await t.rejects(
    lock.run(async () => {
      throw new Error('boom');
    }),
    /boom/,
  );
  t.equal(await client(t).exists(key), 0);
});

t.test('expiry: a holder that does not renew loses the lease after its TTL; its release cannot delete the next holder', async (t) => {
  const key = freshKey(t);
  const a = client(t);
  const b = client(t);
  const first = await redisLock(a, key, { ttlMs: 300, renewEveryMs: 0 }).acquire();
  t.ok(first);
  t.equal(await redisLock(b, key, { ttlMs: 300 }).acquire(), null, 'held');
  await waitFor(async () => (await b.exists(key)) === 0, 5000, 20);
  const second = await redisLock(b, key, { ttlMs: 10_000 }).acquire();
  t.ok(second, 'taken by the next holder after expiry');

  t.equal(await first!.renew(), false, 'the first holder cannot renew a lease it lost');
  t.ok(first!.lost(), 'and knows it lost it');
  t.ok(first!.signal.aborted, 'its signal says so');
  t.equal(await first!.release(), false, 'its release answers false');
  t.equal(await b.get(key), second!.token, 'the second holder still holds the lock');
  t.ok((await b.pttl(key)) > 1000, 'with its own TTL');
  t.equal(await second!.release(), true);
});

t.test('no release by a non-owner even while its own release races the expiry', async (t) => {
  const key = freshKey(t);
  const a = client(t);
  // A key someone else set (another holder's token): a lock that never acquired it cannot delete it through any path.
  await a.set(key, 'someone-else', 'PX', 10_000);
  const lock = redisLock(a, key, { ttlMs: 10_000 });
  t.equal(await lock.acquire(), null);
  t.same(await lock.run(async () => 1), { ran: false });
  t.equal(await a.get(key), 'someone-else', 'untouched');
});

t.test('renewal: a held lock outlives its TTL many times over while its holder runs', async (t) => {
  const key = freshKey(t);
  const a = client(t);
  const b = client(t);
  const ttlMs = 300;
  const held = await redisLock(a, key, { ttlMs, renewEveryMs: 80 }).acquire();
  t.ok(held);
  const started = Date.now();
  let checks = 0;
  const problems: string[] = [];
  // Checked at every poll over 5 TTLs: the holder still owns the key and another is refused.
  while (Date.now() - started < 5 * ttlMs) {
    const owner = await b.get(key);
    if (owner !== held!.token) problems.push(`at ${Date.now() - started} ms the key held ${owner}`);
    if (await redisLock(b, key, { ttlMs }).acquire()) problems.push(`at ${Date.now() - started} ms another holder took it`);
    checks++;
    await new Promise((r) => setTimeout(r, 40));
  }
  t.same(problems, [], `held throughout: ${checks} checks over ${Date.now() - started} ms (TTL ${ttlMs} ms)`);
  t.notOk(held!.lost());
  t.equal(await held!.release(), true);
  t.equal(await b.exists(key), 0);
});

t.test('a holder cut off from Redis loses the lease within its TTL: the others take it and the holder is told', async (t) => {
  const key = freshKey(t);
  const a = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  a.on('error', () => undefined);
  t.teardown(() => a.disconnect());
  await a.connect();
  const b = client(t);
  const held = await redisLock(a, key, { ttlMs: 400, renewEveryMs: 100 }).acquire();
  t.ok(held);
  a.disconnect();
  await waitFor(async () => (await b.exists(key)) === 0, 5000, 20);
  const next = await redisLock(b, key, { ttlMs: 10_000 }).acquire();
  t.ok(next, 'another takes it once it expired');
  await waitFor(async () => held!.signal.aborted, 5000, 20);
  t.ok(held!.lost(), 'the cut-off holder knows it lost the lease');
  t.equal(await b.get(key), next!.token);
  await next!.release();
});

t.test('withTimeout: rejects with a TimeoutError, or resolves with orElse; a fast promise wins', async (t) => {
  const never = new Promise<string>(() => undefined);
  // withTimeout's timer does not hold the process open; this test's wait must.
  const keepAlive = setInterval(() => undefined, 1000);
  t.teardown(() => clearInterval(keepAlive));
  const error = await withTimeout(never, 30, { what: 'the probe' }).catch((e: unknown) => e);
  t.ok(error instanceof TimeoutError);
  t.match((error as Error).message, /the probe: no answer within 30 ms/);
  t.equal(await withTimeout(never, 30, { orElse: 'fallback' }), 'fallback');
  t.equal(await withTimeout(Promise.resolve('fast'), 10_000), 'fast');
  await t.rejects(withTimeout(Promise.reject(new Error('own')), 10_000), /own/);
});
