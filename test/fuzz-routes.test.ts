import t from 'tap';
import { isolatedEnv } from './helpers/env.js';
import { testVendor } from './helpers/app.js';
import { fuzzableApp, fuzzRoutes, type Credentials } from './helpers/fuzz.js';
import { makeJpeg } from './helpers/fixtures.js';
import { multipartBody } from './helpers/multipart.js';

/**
 * Every route the API registers, fuzzed with fast-check through
 * `app.inject` (body, query, path params and headers; see helpers/fuzz.ts).
 * A run count that keeps this file well under a minute on a busy 2-core
 * machine; `npm run bench -- chaos` runs the same properties far longer.
 */
const RUNS = 30;

t.test('no route answers a 5xx, a malformed error or nothing, whatever it is sent', async (t) => {
  const env = await isolatedEnv(t, { ALLOW_PRIVATE_SOURCE_URLS: 'false', LOG_LEVEL: 'silent' });
  const { app, routes } = await fuzzableApp(env);
  t.teardown(() => app.close());
  const vendor = await testVendor(app, { name: 'Fuzz Vendor' });
  const admin = await testVendor(app, { name: 'Fuzz Admin', role: 'admin' });
  const queued = await app.inject({
    method: 'POST',
    url: '/api/image-queue/bulk-process',
    headers: vendor.auth,
    payload: {
      projectId: 'p',
      recordIds: ['a', 'b'],
      photoUrls: ['https://images.example.com/a.jpg', 'https://images.example.com/b.jpg'],
      operations: [{ op: 'resize', width: 8 }],
    },
  });
  t.equal(queued.statusCode, 202, queued.body);
  const creds: Credentials = {
    vendor: vendor.token,
    admin: admin.token,
    knownIds: [...queued.json().jobIds, queued.json().batchId, vendor.vendorId, admin.vendorId],
  };

  const paths = new Set(routes.map((r) => r.url));
  for (const expected of [
    '/api/auth/token',
    '/api/image-queue/bulk-process',
    '/api/image-queue/job/:jobId',
    '/api/admin/dead-letters/:jobId',
    '/api/worker/health',
  ]) {
    t.ok(paths.has(expected), `the route list includes ${expected}`);
  }
  t.ok(routes.length >= 20, `${routes.length} routes found`);

  const report = await fuzzRoutes(app, routes, creds, { runs: RUNS, seed: 1205 });
  t.same(report.failures, [], `${report.requests} requests over ${routes.length} routes; statuses ${JSON.stringify(report.statuses)}`);
  t.ok(report.slowestMs < 10_000, `slowest answer ${Math.round(report.slowestMs)} ms`);
  t.ok((report.statuses[202] ?? 0) + (report.statuses[200] ?? 0) > 0, 'some fuzzed requests were valid and accepted: the handlers ran, not only validation');
});

t.test('the shapes the issue names, on the enqueue routes', async (t) => {
  const env = await isolatedEnv(t, { ALLOW_PRIVATE_SOURCE_URLS: 'false', LOG_LEVEL: 'silent' });
  const { app } = await fuzzableApp(env);
  t.teardown(() => app.close());
  const vendor = await testVendor(app, { name: 'Shapes' });
  const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: `/api/image-queue/${url}`, headers: { ...vendor.auth, ...headers }, payload: payload as object });

  const urls = Array.from({ length: 10_000 }, (_, i) => `https://images.example.com/${i}.jpg`);
  const ids = Array.from({ length: 10_000 }, (_, i) => `r-${i}`);
  const bulk = await post('bulk-process', { projectId: 'p', recordIds: ids, photoUrls: urls, operations: [{ op: 'resize', width: 8 }] });
  t.equal(bulk.statusCode, 413, `a 10,000-item bulk is refused by the plan's cap: ${bulk.body.slice(0, 200)}`);
  t.equal(bulk.json().code, 'PAYLOAD_TOO_LARGE');
  const tooMany = await post('bulk-process', {
    projectId: 'p',
    recordIds: [...ids, 'x'],
    photoUrls: [...urls, 'https://a.example/x.jpg'],
    operations: [{ op: 'resize', width: 8 }],
  });
  t.ok(tooMany.statusCode === 400 || tooMany.statusCode === 413, `10,001 items: ${tooMany.statusCode}`);
  t.equal((await post('bulk-remove-bg', { projectId: 'p', recordIds: [], photoUrls: [] })).statusCode, 400, 'empty arrays');
  t.equal((await post('bulk-remove-bg', { projectId: 'p', items: [] })).statusCode, 400, 'empty items');

  // JSON.stringify itself overflows on this depth, so the text is built by hand
  const deep = `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`;
  const nested = await post(
    'process-queue',
    `{"recordId":"r","projectId":"p","photoUrl":"https://images.example.com/a.jpg","operations":[{"op":"resize","width":8,"extra":${deep}}]}`,
    { 'content-type': 'application/json' },
  );
  t.equal(nested.statusCode, 400, 'deep nesting');
  const admin = await testVendor(app, { name: 'Shapes Admin', role: 'admin' });
  const deepNoSchema = await app.inject({
    method: 'POST',
    url: '/api/admin/dead-letters/retry',
    headers: { ...admin.auth, 'content-type': 'application/json', 'idempotency-key': 'deep-1' },
    payload: deep,
  });
  t.equal(
    deepNoSchema.statusCode,
    400,
    `deep nesting on a route without a body schema, with an Idempotency-Key (was a stack overflow, 500): ${deepNoSchema.body}`,
  );
  const huge = await post('process-queue', {
    recordId: 'x'.repeat(500_000),
    projectId: 'p',
    photoUrl: 'https://images.example.com/a.jpg',
    operations: [{ op: 'resize', width: 8 }],
  });
  t.equal(huge.statusCode, 400, 'a huge string');
  const tooBig = await post('process-queue', { recordId: 'x'.repeat(2_000_000), projectId: 'p', photoUrl: 'https://images.example.com/a.jpg' });
  t.equal(tooBig.statusCode, 413, 'a body over the limit');
  const unicode = await post('process-queue', {
    // control characters are refused (test/hostile-ids.test.ts); other unicode is data
    recordId: '🧨\u202e',
    projectId: 'ǅ',
    photoUrl: 'https://images.example.com/ä.jpg',
    operations: [{ op: 'resize', width: 8 }],
  });
  t.equal(unicode.statusCode, 202, `unicode ids are data, not a problem: ${unicode.body}`);
  const idem = await post(
    'process-queue',
    { recordId: 'r9', projectId: 'p', photoUrl: 'https://images.example.com/a.jpg', operations: [{ op: 'resize', width: 8 }] },
    { 'idempotency-key': 'k'.repeat(5000) },
  );
  t.ok(idem.statusCode === 202 || idem.statusCode === 400, `a 5000-char Idempotency-Key: ${idem.statusCode} ${idem.body.slice(0, 200)}`);

  const noBoundary = await post('bulk-process', 'x', { 'content-type': 'multipart/form-data' });
  t.equal(noBoundary.statusCode, 400, `multipart without a boundary (was a 500): ${noBoundary.body}`);
  const cut = await post('process-queue', '--xyz\r\nContent-Disposition: form-data; name="recordId"\r\n\r\nr', {
    'content-type': 'multipart/form-data; boundary=xyz',
  });
  t.equal(cut.statusCode, 400, `a multipart body cut short (was a 500): ${cut.body}`);

  const png = await makeJpeg(8, 8);
  const wrongField = await multipartBody({ recordId: 'r', projectId: 'p', operations: '[{"op":"resize","width":8}]' }, [
    { field: 'other', filename: 'a.jpg', contentType: 'image/jpeg', bytes: png },
  ]);
  t.equal((await post('process-queue', wrongField.payload, wrongField.headers)).statusCode, 400, 'a file in the wrong field');
  const badJson = await multipartBody({ recordId: 'r', projectId: 'p', operations: '{{' }, [
    { field: 'photo', filename: 'a.jpg', contentType: 'image/jpeg', bytes: png },
  ]);
  t.equal((await post('process-queue', badJson.payload, badJson.headers)).statusCode, 400, 'operations that are not JSON');
});

t.test("a caller's X-Request-Id is logged only when it looks like an id", async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent' });
  const lines: { reqId?: string }[] = [];
  const stream = { write: (line: string) => void lines.push(JSON.parse(line) as { reqId?: string }) };
  const { app } = await fuzzableApp(env, { level: 'info', stream });
  t.teardown(() => app.close());
  const long = 'k'.repeat(8000);
  await app.inject({ method: 'GET', url: '/api/nope', headers: { 'x-request-id': 'trace-42.a:b' } });
  await app.inject({ method: 'GET', url: '/api/nope', headers: { 'x-request-id': long } });
  await app.inject({ method: 'GET', url: '/api/nope', headers: { 'x-request-id': 'evil\u2028"}{' } });
  const ids = new Set(lines.map((l) => l.reqId).filter(Boolean));
  t.ok(ids.has('trace-42.a:b'), 'an id-like value is kept for tracing');
  t.notOk(
    [...ids].some((id) => id === long || String(id).includes('evil')),
    'anything else is replaced',
  );
  t.equal(ids.size, 3, `three requests, three ids: ${[...ids].join(', ').slice(0, 200)}`);
});
