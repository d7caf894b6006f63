import t from 'tap';
import { getEventListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { deadline } from '../platform/deadline.js';

/**
 * The per-attempt time limit every job, fetch, rembg call and upload runs
 * under. What matters beyond aborting on time: once released it holds
 * nothing — no timer, no listener on the long-lived parent (the worker's
 * shutdown signal) — so a worker's memory does not grow with its job rate.
 */
t.test('aborts with a TimeoutError when the time runs out', async (t) => {
  const limit = deadline(30);
  t.notOk(limit.signal.aborted);
  await sleep(80);
  t.ok(limit.signal.aborted);
  t.ok(limit.timedOut);
  t.equal((limit.signal.reason as Error).name, 'TimeoutError');
});

t.test("aborts with the parent's reason when the parent aborts first, and does not call it a timeout", async (t) => {
  const parent = new AbortController();
  const limit = deadline(10_000, parent.signal);
  const reason = new Error('shutting down');
  parent.abort(reason);
  t.ok(limit.signal.aborted);
  t.equal(limit.signal.reason, reason);
  t.notOk(limit.timedOut);
  limit.release();
});

t.test('an already aborted parent aborts it at once', async (t) => {
  const parent = new AbortController();
  parent.abort(new Error('gone'));
  const limit = deadline(10_000, parent.signal);
  t.ok(limit.signal.aborted);
  t.equal((limit.signal.reason as Error).message, 'gone');
});

t.test('release leaves no listener on the parent and no timer behind', async (t) => {
  const parent = new AbortController();
  const limits = Array.from({ length: 1000 }, () => deadline(40, parent.signal));
  t.equal(getEventListeners(parent.signal, 'abort').length, 1000, 'each live limit listens to the parent');
  for (const limit of limits) limit.release();
  t.equal(getEventListeners(parent.signal, 'abort').length, 0, 'released limits do not');
  await sleep(100);
  t.ok(
    limits.every((l) => !l.signal.aborted && !l.timedOut),
    'their timers were cleared',
  );
  parent.abort();
  t.ok(
    limits.every((l) => !l.signal.aborted),
    'and the parent no longer reaches them',
  );
});

t.test('a limit that timed out unhooks itself from the parent', async (t) => {
  const parent = new AbortController();
  deadline(10, parent.signal);
  await sleep(50);
  t.equal(getEventListeners(parent.signal, 'abort').length, 0);
});
