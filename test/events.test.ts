import t from 'tap';
import { isolatedEnv } from './helpers/env.js';
import { listeningApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { queueResize, waitForFinal } from './helpers/jobs.js';
import { dataOf, openSse, type SseMessage } from './helpers/sse.js';

/**
 * GET /api/image-queue/events: the vendor's job and batch events, live and
 * resumed from the ledger with Last-Event-ID, heartbeats, and tenant
 * isolation. A real server socket and a real worker.
 */
interface Ev {
  id: number;
  type: string;
  jobId: string | null;
  batchId: string | null;
  error: { code: string } | null;
}

const isJob = (jobId: string, type: string) => (m: SseMessage) => m.event === type && dataOf<Ev>(m).jobId === jobId;

t.test('live events, resume with Last-Event-ID, heartbeats and isolation', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', SSE_HEARTBEAT_MS: '300' });
  const { app, url } = await listeningApp(t, env);
  const images = await testServer(t);
  images.route('/photo.jpg', serveBytes(await makeJpeg(400, 300), 'image/jpeg'));
  const photo = `${images.url}/photo.jpg`;
  const vendor = await testVendor(app, { name: 'A' });
  const other = await testVendor(app, { name: 'B' });
  const events = `${url}/api/image-queue/events`;

  const unauthenticated = await fetch(events);
  t.equal(unauthenticated.status, 401, 'a token is required');
  const bad = await fetch(events, { headers: { ...vendor.auth, 'last-event-id': 'abc' } });
  t.equal(bad.status, 400, 'a Last-Event-ID that is not an event id is refused');

  const stream = await openSse(t, events, vendor.auth);
  const otherStream = await openSse(t, events, other.auth);
  t.equal(stream.status, 200);
  const ready = await stream.next((m) => m.event === 'ready');
  t.same(dataOf(ready), { lastEventId: 0, resumed: false, reset: false }, 'a new vendor starts at 0');

  // Queued before any worker runs: the stream sees it.
  const first = await queueResize(app, vendor, photo, 'rec-1');
  const queued = await stream.next(isJob(first, 'queued'));
  t.equal(queued.id, '1', 'the first event of the vendor is number 1');

  await testWorker(t, env);
  const completed = await stream.next(isJob(first, 'completed'));
  const active = await stream.next(isJob(first, 'active'));
  t.ok(Number(active.id) > Number(queued.id) && Number(completed.id) > Number(active.id), 'ids increase in the order the changes happened');
  t.equal(Number(completed.id), 3, 'no event numbers are skipped');
  const progress = stream.messages.filter((m) => m.event === 'progress');
  t.ok(progress.length > 0, 'live progress is streamed');
  t.ok(
    progress.every((m) => m.id === null),
    'progress carries no id (it is not replayed)',
  );
  await stream.next(() => stream.comments.includes('heartbeat'), 5000).catch(() => undefined);
  t.ok(stream.comments.includes('heartbeat'), 'idle streams get heartbeat comments');

  // Disconnect after the first job; a second job runs while nobody listens.
  stream.close();
  const second = await queueResize(app, vendor, photo, 'rec-2');
  await waitForFinal(app.db, second);
  const resumed = await openSse(t, events, { ...vendor.auth, 'last-event-id': completed.id as string });
  const resumedReady = dataOf(await resumed.next((m) => m.event === 'ready'));
  t.same(resumedReady, { lastEventId: 3, resumed: true, reset: false });
  const replay = await resumed.next(isJob(second, 'completed'));
  const replayed = resumed.messages.filter((m) => m.id !== null && m.event !== 'ready');
  t.same(
    replayed.map((m) => [m.event, m.id]),
    [
      ['queued', '4'],
      ['active', '5'],
      ['completed', '6'],
    ],
    'exactly the events after Last-Event-ID, in order, from the ledger',
  );
  t.equal(dataOf<Ev>(replay).jobId, second);

  // ?lastEventId= does the same for clients that cannot set headers.
  const byQuery = await openSse(t, `${events}?lastEventId=5`, vendor.auth);
  const again = await byQuery.next((m) => m.event === 'completed');
  t.equal(again.id, '6');
  t.notOk(
    byQuery.messages.some((m) => m.event === 'queued'),
    'nothing at or before the id is sent again',
  );

  // An id the vendor never had: the client is told to reload its state.
  const future = await openSse(t, events, { ...vendor.auth, 'last-event-id': '999' });
  t.same(dataOf(await future.next((m) => m.event === 'ready')), { lastEventId: 6, resumed: true, reset: true });

  // The other vendor saw none of it; its own job shows up on its own stream only.
  const own = await queueResize(app, other, photo, 'rec-b');
  await otherStream.next(isJob(own, 'completed'));
  t.ok(
    otherStream.messages.every((m) => m.event === 'ready' || dataOf<Ev>(m).jobId === own),
    "one vendor never sees another's events",
  );
  t.notOk(
    resumed.messages.some((m) => m.data.includes(own)),
    'nor the other way round',
  );
});

t.test('a batch streams batch.finished once, after its last job; failures carry their error', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing' });
  const { app, url } = await listeningApp(t, env);
  await testWorker(t, env);
  const images = await testServer(t);
  images.route('/photo.jpg', serveBytes(await makeJpeg(200, 150), 'image/jpeg'));
  const vendor = await testVendor(app);
  const stream = await openSse(t, `${url}/api/image-queue/events`, vendor.auth);
  await stream.next((m) => m.event === 'ready');

  const res = await app.inject({
    method: 'POST',
    url: '/api/image-queue/bulk-process',
    headers: vendor.auth,
    payload: {
      projectId: 'p',
      items: [
        { recordId: 'ok-1', photoUrl: `${images.url}/photo.jpg` },
        { recordId: 'ok-2', photoUrl: `${images.url}/photo.jpg` },
        { recordId: 'missing', photoUrl: `${images.url}/missing.jpg` },
      ],
      operations: [{ op: 'resize', width: 50 }],
    },
  });
  t.equal(res.statusCode, 202, res.body);
  const { batchId, jobIds } = res.json() as { batchId: string; jobIds: string[] };
  const finished = await stream.next((m) => m.event === 'batch.finished');
  t.equal(dataOf<Ev>(finished).batchId, batchId);
  const ends = stream.messages.filter((m) => ['completed', 'failed', 'dead'].includes(m.event));
  t.equal(ends.length, 3, 'every job of the batch ended before batch.finished');
  t.ok(
    ends.every((m) => Number(m.id) < Number(finished.id)),
    'batch.finished comes after the last job',
  );
  const failed = ends.find((m) => dataOf<Ev>(m).jobId === jobIds[2]);
  t.equal(failed?.event, 'failed');
  t.equal(dataOf<Ev>(failed as SseMessage).error?.code, 'SOURCE_NOT_FOUND');
  const ids = stream.messages.filter((m) => m.id !== null && m.event !== 'ready').map((m) => Number(m.id));
  t.same(
    ids,
    ids.map((_, i) => i + 1),
    'the stream holds every event number from 1, in order, once',
  );
  t.equal(stream.messages.filter((m) => m.event === 'batch.finished').length, 1);
});

t.test('under concurrent enqueues and completions, a resumed stream misses nothing and repeats nothing', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', CONCURRENCY_IMAGE_PROCESSING: '8' });
  const { app, url } = await listeningApp(t, env);
  await testWorker(t, env);
  const images = await testServer(t);
  images.route('/photo.jpg', serveBytes(await makeJpeg(64, 48), 'image/jpeg'));
  const vendor = await testVendor(app);
  const events = `${url}/api/image-queue/events`;

  const jobs = 40;
  // The first stream is open before anything happens; then it and its
  // successors are dropped and resumed from the last id seen, again and
  // again, while the jobs are queued and run.
  let stream = await openSse(t, events, vendor.auth);
  await stream.next((m) => m.event === 'ready');
  const enqueues = Promise.all(Array.from({ length: jobs }, (_, i) => queueResize(app, vendor, `${images.url}/photo.jpg`, `r${i}`)));
  const seen: number[] = [];
  let last: string | null = null;
  const expected = jobs * 3;
  for (let round = 0; seen.length < expected && round < 200; round++) {
    if (round > 0) {
      stream = await openSse(t, events, last === null ? vendor.auth : { ...vendor.auth, 'last-event-id': last });
      await stream.next((m) => m.event === 'ready');
    }
    await new Promise((r) => setTimeout(r, 150));
    stream.close();
    await stream.closed;
    for (const m of stream.messages) {
      if (m.id === null || m.event === 'ready') continue;
      seen.push(Number(m.id));
      last = m.id;
    }
    if (last === null) last = stream.messages[0]?.id ?? null;
  }
  await enqueues;
  t.equal(seen.length, expected, 'three events per job (queued, active, completed)');
  t.same(
    seen,
    seen.map((_, i) => i + 1),
    'every event exactly once, in order, across reconnects',
  );
});
