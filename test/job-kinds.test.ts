import t from 'tap';
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { JobKindSpec } from '../jobs/kinds.js';
import type { JobContext } from '../worker/context.js';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { waitForFinal } from './helpers/jobs.js';

/**
 * A job kind is one registry entry plus a processor (docs/worker.md). This
 * registers a throwaway kind with the API and the worker only, and runs it
 * end to end: its routes, its options schema, its queue, the ledger, status
 * and queue-stats.
 */
const EchoOptions = Type.Object(
  { text: Type.String({ minLength: 1, maxLength: 50 }), times: Type.Optional(Type.Integer({ minimum: 1, maximum: 3, default: 1 })) },
  {
    additionalProperties: false,
  },
);

const echoKind: JobKindSpec<'echo', typeof EchoOptions> = {
  kind: 'echo',
  queue: 'echo-test',
  statKey: 'echo',
  healthSizeField: 'echoQueueSize',
  options: EchoOptions,
  requestFields: { options: EchoOptions },
  resolveOptions: (request) => {
    const options = Value.Default(EchoOptions, structuredClone(request.options ?? {})) as { text: string; times: number };
    return { options, problems: options.text === 'forbidden' ? [{ path: 'body/options/text', message: 'is not allowed' }] : [] };
  },
  rateTier: 'processing',
  concurrency: { default: 2, variable: 'CONCURRENCY_ECHO_TEST' },
  defaultDurationMs: 50,
  routes: {
    single: { url: '/echo-queue', operationId: 'queueEcho', summary: 'Echo a text' },
    bulk: { url: '/bulk-echo', operationId: 'queueBulkEcho', summary: 'Echo many' },
  },
  needs: [],
};

async function echo(ctx: JobContext<'echo'>) {
  const { bytes, info } = await ctx.loadSource();
  await ctx.progress(50);
  const options = ctx.payload.options as { text: string; times: number };
  const text = options.text.repeat(options.times);
  return {
    result: { echoed: text, sourceBytes: bytes.length, width: info.width },
    record: { processedPhotoUrl: null, width: info.width, height: info.height },
    recordFields: { 'echo.text': text },
  };
}

t.test('a kind registered by a test runs end to end', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'echo-test', LOG_LEVEL: 'silent' });
  const app = await testApp(t, env, { jobKinds: [echoKind] });
  await testWorker(t, env, { kinds: [echoKind], processors: { echo } });
  const images = await testServer(t);
  const jpeg = await makeJpeg(40, 30);
  images.route('/p.jpg', serveBytes(jpeg, 'image/jpeg'));
  const vendor = await testVendor(app);

  const res = await app.inject({
    method: 'POST',
    url: '/api/image-queue/echo-queue',
    headers: vendor.auth,
    payload: { recordId: 'r1', projectId: 'p', photoUrl: `${images.url}/p.jpg`, options: { text: 'hi', times: 2 } },
  });
  t.equal(res.statusCode, 202, res.body);
  const jobId = (res.json() as { jobId: string }).jobId;
  const job = await waitForFinal(app.db, jobId);
  t.equal(job.status, 'completed', `${job.error_code}: ${job.error_message}`);
  t.equal(job.kind, 'echo');
  const status = await app.inject({ method: 'GET', url: `/api/image-queue/job/${jobId}`, headers: vendor.auth });
  t.equal(status.statusCode, 200);
  t.match(status.json(), {
    state: 'completed',
    data: { kind: 'echo', options: { text: 'hi', times: 2 } },
    result: { echoed: 'hihi', sourceBytes: jpeg.length, width: 40 },
  });

  const bulk = await app.inject({
    method: 'POST',
    url: '/api/image-queue/bulk-echo',
    headers: vendor.auth,
    payload: {
      projectId: 'p',
      items: [
        { recordId: 'b1', photoUrl: `${images.url}/p.jpg` },
        { recordId: 'b2', photoUrl: `${images.url}/p.jpg` },
      ],
      options: { text: 'x' },
    },
  });
  t.equal(bulk.statusCode, 202, bulk.body);
  for (const id of (bulk.json() as { jobIds: string[] }).jobIds) {
    const done = await waitForFinal(app.db, id);
    t.equal(done.status, 'completed', `${done.error_code}: ${done.error_message}`);
  }

  const listed = await app.inject({ method: 'GET', url: '/api/image-queue/jobs?kind=echo', headers: vendor.auth });
  t.equal(listed.statusCode, 200, listed.body);
  t.equal((listed.json() as { jobs: unknown[] }).jobs.length, 3, 'the job list filters by the new kind');

  const stats = await app.inject({ method: 'GET', url: '/api/image-queue/queue-stats', headers: vendor.auth });
  t.equal(stats.statusCode, 200, stats.body);
  t.match(
    stats.json(),
    { echo: { completed: 3, waiting: 0, queue: { isPaused: false } }, imageProcessing: { completed: 0 } },
    'queue-stats has the kind under its stats key',
  );
});

t.test("the kind's options schema and its own checks guard its routes", async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent' });
  const app = await testApp(t, env, { jobKinds: [echoKind] });
  const vendor = await testVendor(app);
  const post = (options: unknown) =>
    app.inject({
      method: 'POST',
      url: '/api/image-queue/echo-queue',
      headers: vendor.auth,
      payload: { recordId: 'r1', projectId: 'p', photoUrl: 'https://example.com/p.jpg', options },
    });
  const tooMany = await post({ text: 'hi', times: 9 });
  t.equal(tooMany.statusCode, 400, 'the schema limits times');
  t.match(tooMany.body, /times/);
  const refused = await post({ text: 'forbidden' });
  t.equal(refused.statusCode, 400, "resolveOptions' problems answer 400");
  t.match(refused.json(), { fields: [{ path: 'body/options/text' }] });
  const none = await app.db.selectFrom('jobs').select('id').execute();
  t.equal(none.length, 0, 'nothing was queued');

  const plain = await testApp(t, env);
  const unknown = await plain.inject({
    method: 'POST',
    url: '/api/image-queue/echo-queue',
    headers: vendor.auth,
    payload: { recordId: 'r1', projectId: 'p', photoUrl: 'https://example.com/p.jpg', options: { text: 'hi' } },
  });
  t.equal(unknown.statusCode, 404, 'an API built without the kind has no route for it');
});
