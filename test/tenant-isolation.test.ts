import t from 'tap';
import { createSigner } from 'fast-jwt';
import type { FastifyInstance } from 'fastify';
import { isolatedEnv, TEST_JWT_SECRET } from './helpers/env.js';
import { testLedger } from './helpers/jobs.js';
import { testVendor, type TestVendor } from './helpers/app.js';
import { fuzzableApp, type FuzzRoute } from './helpers/fuzz.js';
import { DESCRIPTOR_LENGTH, tagFaces } from '../db/repos/faces.js';
import { failAttempt, startAttempt } from '../db/repos/jobs.js';
import { deleteVendor } from '../db/repos/vendors.js';

/**
 * Tokens and tenants, over every route the API registers (so a new route is
 * swept without editing this file):
 * - every route that needs a token refuses `alg: none`, a wrong secret, an
 *   expired token and a deleted vendor's token with 401, before it reads
 *   the body; every admin route refuses a vendor token with 403;
 * - every route with an id in its path, called by vendor B with vendor A's
 *   id, answers exactly what it answers for an id that does not exist.
 */
// /metrics and /healthz are for operators: open, or behind METRICS_TOKEN (test/metrics.test.ts), never a vendor token. /dashboard is static files.
// `*` is the CORS preflight (OPTIONS): a preflight never carries a token (test/cors.test.ts).
const PUBLIC = [/^\*$/, /^\/docs/, /^\/files\//, /^\/api\/auth\/token$/, /^\/api\/worker\/health$/, /^\/metrics$/, /^\/healthz$/, /^\/dashboard/, /^\/v1\.0\//];
// /v1.0 (remove.bg's API) authenticates by X-Api-Key with remove.bg's 403s: test/removebg.test.ts covers its keys and another vendor's job (404).
const MISSING_ID = '01ARZ3NDEKTSV4RRFFQ69G5FAV';

function fill(url: string, ids: Record<string, string>): string {
  return url.replace(/:(\w+)/g, (_, name: string) => {
    const id = ids[name];
    if (id === undefined) throw new Error(`the sweep does not know the path parameter :${name} of ${url}; add how to make one to this test`);
    return encodeURIComponent(id);
  });
}

let callers = 0;

/** Each call from its own address: anonymous and badly-tokened requests count per IP, and this sweep is not about that limit. */
/** An error body without its request id (which differs per request by design). */
function withoutRequestId(body: Record<string, unknown>): Record<string, unknown> {
  const { requestId: _requestId, ...rest } = body;
  return rest;
}

function call(app: FastifyInstance, route: FuzzRoute, url: string, authorization: string | undefined) {
  const headers: Record<string, string> = authorization ? { authorization } : {};
  const hasBody = route.method === 'POST' || route.method === 'PATCH' || route.method === 'PUT';
  callers++;
  const remoteAddress = `198.18.${Math.floor(callers / 250) % 250}.${(callers % 250) + 1}`;
  return app.inject({ method: route.method as 'GET', url, headers, remoteAddress, ...(hasBody ? { payload: {} } : {}) });
}

t.test('tokens: forged, expired, deleted and under-privileged tokens are refused on every route', async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent' });
  const { app, routes } = await fuzzableApp(env);
  t.teardown(() => app.close());
  const vendor = await testVendor(app, { name: 'Token Vendor' });
  const admin = await testVendor(app, { name: 'Token Admin', role: 'admin' });
  const gone = await testVendor(app, { name: 'Deleted Admin', role: 'admin' });
  await deleteVendor(app.db, gone.vendorId);

  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: admin.vendorId, plan: 'unlimited', role: 'admin' };
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const bad: Record<string, string> = {
    'alg none': `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims, iat: now, exp: now + 600 })}.`,
    'alg none, no dot': `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims, iat: now, exp: now + 600 })}`,
    'wrong secret': `Bearer ${createSigner({ key: 'another-secret-that-is-long-enough-000000', algorithm: 'HS256' })(claims)}`,
    'HS512 with the right secret': `Bearer ${createSigner({ key: TEST_JWT_SECRET, algorithm: 'HS512' })(claims)}`,
    expired: `Bearer ${createSigner({ key: TEST_JWT_SECRET, algorithm: 'HS256' })({ ...claims, iat: now - 7200, exp: now - 3600 })}`,
    'not yet valid': `Bearer ${createSigner({ key: TEST_JWT_SECRET, algorithm: 'HS256' })({ ...claims, iat: now, nbf: now + 3600 })}`,
    'no subject': `Bearer ${createSigner({ key: TEST_JWT_SECRET, algorithm: 'HS256' })({ plan: 'unlimited', role: 'admin' })}`,
    "deleted vendor's token": gone.auth.authorization,
    garbage: 'Bearer a.b.c',
    'no scheme': admin.token,
    none: '',
  };
  const ids = {
    jobId: MISSING_ID,
    batchId: MISSING_ID,
    personId: MISSING_ID,
    vendorId: admin.vendorId,
    queue: 'image-processing',
    queueName: 'image-processing',
    queueStatus: 'failed',
    schedulerId: 'none',
  };

  let checked = 0;
  for (const route of routes) {
    if (PUBLIC.some((p) => p.test(route.url))) continue;
    const url = fill(route.url, ids);
    for (const [what, authorization] of Object.entries(bad)) {
      const res = await call(app, route, url, authorization || undefined);
      t.equal(res.statusCode, 401, `${route.method} ${route.url} with ${what}: ${res.body.slice(0, 160)}`);
      t.equal(res.json().code, 'UNAUTHORIZED');
      checked++;
    }
    // The token is checked before the request is validated: no schema is revealed to a caller without one.
    const invalid = await call(app, route, `${url}?limit=-1&status=nope&queue=nope`, undefined);
    t.equal(invalid.statusCode, 401, `${route.method} ${route.url} with an invalid query and no token: ${invalid.body.slice(0, 160)}`);
    if (route.url.startsWith('/api/admin/') || route.url.startsWith('/admin/')) {
      const res = await call(app, route, url, vendor.auth.authorization);
      t.equal(res.statusCode, 403, `${route.method} ${route.url} with a vendor token: ${res.body.slice(0, 160)}`);
      t.equal(res.json().code, 'FORBIDDEN');
      const ok = await call(app, route, url, admin.auth.authorization);
      t.ok(ok.statusCode !== 401 && ok.statusCode !== 403, `${route.method} ${route.url} with the admin token is let in (${ok.statusCode})`);
    }
  }
  t.ok(checked >= 20 * Object.keys(bad).length, `${checked} refusals checked`);
  const exp = await app.inject({ method: 'GET', url: '/api/image-queue/jobs', headers: { authorization: bad['expired'] as string } });
  t.match(exp.json().message, /expired/, 'an expired token is told so');
});

t.test('tenant sweep: vendor B using vendor A ids learns nothing', async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent' });
  const { app, routes } = await fuzzableApp(env);
  t.teardown(() => app.close());
  const a = await testVendor(app, { name: 'Studio A', faceTagging: true });
  const b = await testVendor(app, { name: 'Studio B', faceTagging: true });
  const aAdmin = await testVendor(app, { name: 'Ops', role: 'admin' });

  // A's data: a batch of two jobs (one dead, so a dead letter exists), a person from a tagged face.
  const bulk = await app.inject({
    method: 'POST',
    url: '/api/image-queue/bulk-process',
    headers: { ...a.auth, 'idempotency-key': 'shared-key-1' },
    payload: {
      projectId: 'p',
      recordIds: ['r1', 'r2'],
      photoUrls: ['https://images.example.com/1.jpg', 'https://images.example.com/2.jpg'],
      operations: [{ op: 'resize', width: 8 }],
    },
  });
  t.equal(bulk.statusCode, 202, bulk.body);
  const [jobId, deadJobId] = bulk.json().jobIds as [string, string];
  const batchId = bulk.json().batchId as string;
  const attempt = await startAttempt(testLedger(t, app.db, env), deadJobId, 'sweep');
  t.ok(attempt);
  await failAttempt(app.db, { jobId: deadJobId, attempt: attempt?.attempt ?? 1, status: 'dead', code: 'SOURCE_FETCH_FAILED', message: 'down' });
  const tagged = await tagFaces(app.db, {
    vendorId: a.vendorId,
    jobId,
    projectId: 'p',
    recordId: 'r1',
    imageWidth: 100,
    imageHeight: 100,
    faces: [{ box: { x: 1, y: 1, width: 50, height: 50 }, score: 0.9, descriptor: new Float32Array(DESCRIPTOR_LENGTH).fill(0.1) }],
    maxDistance: 0.4,
  });
  const personId = tagged.faces[0]?.personId as string;
  t.ok(personId, 'A has a person');

  const aIds: Record<string, string> = {
    jobId: deadJobId,
    batchId,
    personId,
    vendorId: a.vendorId,
    queue: 'image-processing',
    queueName: 'image-processing',
    queueStatus: 'failed',
    schedulerId: 'none',
  };
  const randomIds: Record<string, string> = {
    jobId: MISSING_ID,
    batchId: MISSING_ID,
    personId: MISSING_ID,
    vendorId: MISSING_ID,
    queue: 'image-processing',
    queueName: 'image-processing',
    queueStatus: 'failed',
    schedulerId: 'none',
  };
  const isAdminRoute = (url: string) => url.startsWith('/api/admin/') || url.startsWith('/admin/');
  const owner = (route: FuzzRoute): TestVendor => (isAdminRoute(route.url) ? aAdmin : a);

  let swept = 0;
  for (const route of routes.filter((r) => r.url.includes('/:') && !PUBLIC.some((p) => p.test(r.url)))) {
    if (route.method !== 'GET') continue; // writes are checked below, once the reads have shown the ids are A's
    const mine = await call(app, route, fill(route.url, aIds), owner(route).auth.authorization);
    const foreign = await call(app, route, fill(route.url, aIds), b.auth.authorization);
    const missing = await call(app, route, fill(route.url, randomIds), b.auth.authorization);
    const name = `${route.method} ${route.url}`;
    if (isAdminRoute(route.url)) {
      t.equal(foreign.statusCode, 403, `${name}: B is not an admin`);
    } else {
      t.equal(mine.statusCode, 200, `${name}: A sees its own (${mine.body.slice(0, 120)})`);
      t.equal(foreign.statusCode, 404, `${name}: B gets 404 for A's id`);
    }
    t.equal(foreign.statusCode, missing.statusCode, `${name}: same status as a missing id`);
    t.same(withoutRequestId(foreign.json()), withoutRequestId(missing.json()), `${name}: same body as a missing id`);
    t.notMatch(foreign.body, new RegExp(`${a.vendorId}|${aIds['jobId']}|${batchId}|${personId}`), `${name}: no A id in the answer`);
    swept++;
  }
  t.ok(swept >= 5, `${swept} id routes swept`);

  // Writes with ids: B (not an admin) cannot retry, purge or patch A's things; A's dead letter is still there.
  for (const route of routes.filter((r) => r.url.includes('/:') && r.method !== 'GET' && !PUBLIC.some((p) => p.test(r.url)))) {
    const foreign = await call(app, route, fill(route.url, aIds), b.auth.authorization);
    const missing = await call(app, route, fill(route.url, randomIds), b.auth.authorization);
    t.equal(foreign.statusCode, missing.statusCode, `${route.method} ${route.url}: B's write on A's id answers as for a missing id (${foreign.statusCode})`);
    t.same(withoutRequestId(foreign.json()), withoutRequestId(missing.json()));
  }
  const letter = await app.inject({ method: 'GET', url: `/api/admin/dead-letters/${deadJobId}`, headers: aAdmin.auth });
  t.equal(letter.statusCode, 200, "A's dead letter survived B's attempts");

  // Ids in queries and lists.
  const byBatch = await app.inject({ method: 'GET', url: `/api/image-queue/jobs?batchId=${batchId}`, headers: b.auth });
  const byMissingBatch = await app.inject({ method: 'GET', url: `/api/image-queue/jobs?batchId=${MISSING_ID}`, headers: b.auth });
  t.equal(byBatch.statusCode, 404, "B listing jobs of A's batch");
  t.same(withoutRequestId(byBatch.json()), withoutRequestId(byMissingBatch.json()));
  for (const url of ['/api/image-queue/jobs', '/api/persons', '/api/image-queue/queue-stats']) {
    const res = await app.inject({ method: 'GET', url, headers: b.auth });
    t.equal(res.statusCode, 200, url);
    t.notMatch(res.body, new RegExp(`${jobId}|${deadJobId}|${batchId}|${personId}|${a.vendorId}`), `${url}: nothing of A's`);
  }
  const stats = await app.inject({ method: 'GET', url: '/api/image-queue/queue-stats', headers: b.auth });
  t.equal(stats.json().imageProcessing.waiting, 0, "B's counts do not include A's queued job");

  // The same Idempotency-Key is a different key per vendor: B is neither replayed A's answer nor told A used it.
  const bSame = await app.inject({
    method: 'POST',
    url: '/api/image-queue/bulk-process',
    headers: { ...b.auth, 'idempotency-key': 'shared-key-1' },
    payload: { projectId: 'q', recordIds: ['x'], photoUrls: ['https://images.example.com/x.jpg'], operations: [{ op: 'resize', width: 8 }] },
  });
  t.equal(bSame.statusCode, 202, bSame.body);
  t.not(bSame.headers['idempotent-replayed'], 'true');
  t.notSame(bSame.json().jobIds, bulk.json().jobIds);

  // A body naming A as the vendor is refused for B on every enqueue route.
  // Control routes (`/job/:jobId/cancel`, ...) take no body and answer 404 for A's ids above.
  for (const route of routes.filter((r) => r.method === 'POST' && r.url.startsWith('/api/image-queue/') && !r.url.includes(':'))) {
    const bulkRoute = route.url.includes('/bulk-');
    const payload = {
      projectId: 'p',
      vendorId: a.vendorId,
      mode: 'passport',
      operations: [{ op: 'resize', width: 8 }],
      ...(bulkRoute ? { recordIds: ['z'], photoUrls: ['https://images.example.com/z.jpg'] } : { recordId: 'z', photoUrl: 'https://images.example.com/z.jpg' }),
    };
    const clean = Object.fromEntries(
      Object.entries(payload).filter(([k]) =>
        route.url.includes('crop-face') ? k !== 'operations' : route.url.includes('remove-bg') ? k !== 'operations' && k !== 'mode' : k !== 'mode',
      ),
    );
    const res = await app.inject({ method: 'POST', url: route.url, headers: b.auth, payload: clean });
    t.equal(res.statusCode, 403, `${route.url} with A's vendorId in B's body: ${res.body.slice(0, 160)}`);
  }
});
