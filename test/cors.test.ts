import t from 'tap';
import { spawnSync } from 'node:child_process';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor, type TestVendor } from './helpers/app.js';
import { deleteVendor, findVendor } from '../db/repos/vendors.js';
import { CORS_ALLOWED_HEADERS, CORS_EXPOSED_HEADERS } from '../backend/plugins/cors.js';

/**
 * CORS against the real app (issue 19): preflights answered for the origins
 * some vendor (or CORS_ORIGINS) allows, the real request checked against its
 * own vendor's origins, headers exposed to the page, remove.bg's X-Api-Key
 * route, and the admin API and CLI that set a vendor's origins.
 */
const OPERATOR = 'https://operator.example';
const A_ORIGIN = 'https://app.a.example';
const A_ADMIN = 'http://localhost:5173';
const B_ORIGIN = 'https://b.example';
const STRANGER = 'https://evil.example';
const ROOT = new URL('..', import.meta.url).pathname;

t.test('CORS', async (t) => {
  const env = await isolatedEnv(t, { CORS_ORIGINS: `${OPERATOR}, `, CORS_MAX_AGE_SECONDS: '900' });
  const app = await testApp(t, env);
  const admin = await testVendor(app, { name: 'Operator', role: 'admin' });
  const patch = (vendor: TestVendor, payload: object) =>
    app.inject({ method: 'PATCH', url: `/api/admin/vendors/${vendor.vendorId}`, headers: admin.auth, payload });
  // a: its own origins; b: another vendor's; d: none set, so the operator's CORS_ORIGINS.
  const a = await testVendor(app, { name: 'A' });
  const b = await testVendor(app, { name: 'B' });
  const d = await testVendor(app, { name: 'D' });

  const preflight = (path: string, origin: string, method = 'POST', headers = 'authorization,content-type') =>
    app.inject({ method: 'OPTIONS', url: path, headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': headers } });
  const stats = (vendor: TestVendor, origin?: string) =>
    app.inject({ method: 'GET', url: '/api/image-queue/queue-stats', headers: { ...vendor.auth, ...(origin ? { origin } : {}) } });

  t.test('the admin API sets exact origins, and refuses anything else', async (t) => {
    for (const bad of [['https://app.a.example/'], ['*'], ['https://*.a.example'], ['ftp://files.a.example'], ['HTTPS://App.A.example'], ['app.a.example']]) {
      const res = await patch(a, { corsOrigins: bad });
      t.equal(res.statusCode, 400, `${bad[0]} refused`);
      t.match(res.json(), { code: 'BAD_REQUEST', message: /body\/corsOrigins/ });
    }
    t.match(
      (await patch(a, { corsOrigins: ['https://app.a.example/'] })).json().message,
      /write it as https:\/\/app\.a\.example/,
      'the message says how to write it',
    );
    t.equal((await patch(a, { corsOrigins: Array.from({ length: 51 }, (_, i) => `https://s${i}.example`) })).statusCode, 400, 'at most 50');

    const set = await patch(a, { corsOrigins: [A_ORIGIN, A_ADMIN, A_ORIGIN] });
    t.equal(set.statusCode, 200, set.body);
    t.same(set.json().corsOrigins, [A_ORIGIN, A_ADMIN], 'stored once each');
    t.equal((await patch(b, { corsOrigins: [B_ORIGIN] })).statusCode, 200);
    const read = await app.inject({ method: 'GET', url: `/api/admin/vendors/${d.vendorId}`, headers: admin.auth });
    t.equal(read.json().corsOrigins, null, 'unset: the operator default applies');
    t.equal(
      (await app.inject({ method: 'PATCH', url: `/api/admin/vendors/${a.vendorId}`, headers: a.auth, payload: { corsOrigins: [STRANGER] } })).statusCode,
      403,
      'admins only',
    );
  });

  t.test('preflight: answered for every known origin, cached, no credentials', async (t) => {
    for (const origin of [A_ORIGIN, A_ADMIN, B_ORIGIN, OPERATOR]) {
      const res = await preflight('/api/image-queue/process-queue', origin);
      t.equal(res.statusCode, 204, `${origin}: ${res.body}`);
      t.equal(res.headers['access-control-allow-origin'], origin, 'the origin is reflected, never *');
    }
    const res = await preflight(
      '/api/image-queue/job/01ARZ3NDEKTSV4RRFFQ69G5FAV',
      A_ORIGIN,
      'DELETE',
      'authorization,if-none-match,prefer,idempotency-key,x-request-id',
    );
    t.equal(res.statusCode, 204);
    t.equal(res.headers['access-control-max-age'], '900', 'browsers cache the answer (CORS_MAX_AGE_SECONDS)');
    t.same(String(res.headers['access-control-allow-methods']).split(', '), ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']);
    t.same(String(res.headers['access-control-allow-headers']).split(', '), [...CORS_ALLOWED_HEADERS]);
    t.equal(res.headers['access-control-allow-credentials'], undefined, 'credentials are never cookies');
    t.match(String(res.headers['vary']), /Origin/);

    const refused = await preflight('/api/image-queue/process-queue', STRANGER);
    t.equal(refused.statusCode, 403, 'an origin no vendor allows');
    t.equal(refused.headers['access-control-allow-origin'], undefined);
    t.match(refused.json(), { code: 'FORBIDDEN', message: /origin https:\/\/evil\.example is not allowed/ });
    const noMethod = await app.inject({ method: 'OPTIONS', url: '/api/image-queue/process-queue', headers: { origin: A_ORIGIN } });
    t.equal(noMethod.statusCode, 400, 'an OPTIONS without Access-Control-Request-Method is not a preflight');
  });

  t.test("the real request: the Origin must be one of the caller's vendor", async (t) => {
    const own = await stats(a, A_ORIGIN);
    t.equal(own.statusCode, 200, own.body);
    t.equal(own.headers['access-control-allow-origin'], A_ORIGIN);
    t.same(String(own.headers['access-control-expose-headers']).split(', '), [...CORS_EXPOSED_HEADERS]);
    for (const name of [
      'ETag',
      'Location',
      'Retry-After',
      'X-Request-Id',
      'X-Job-Id',
      'X-Width',
      'X-Height',
      'X-Type',
      'X-Credits-Charged',
      'Idempotent-Replayed',
    ]) {
      t.ok((CORS_EXPOSED_HEADERS as readonly string[]).includes(name), `${name} exposed`);
    }
    t.ok(CORS_EXPOSED_HEADERS.some((h) => h.startsWith('RateLimit-')) && CORS_EXPOSED_HEADERS.some((h) => h.startsWith('X-RateLimit-')));
    t.equal(own.headers['access-control-allow-credentials'], undefined);

    // b's origin is known (its preflight passes) but is not a's: refused before anything runs.
    const other = await stats(a, B_ORIGIN);
    t.equal(other.statusCode, 403);
    t.equal(other.headers['access-control-allow-origin'], undefined, 'no CORS header: the page cannot read it');
    t.match(other.json(), { code: 'FORBIDDEN', message: /origin https:\/\/b\.example is not allowed .* corsOrigins/ });
    t.equal((await stats(a, OPERATOR)).statusCode, 403, "a vendor's own list replaces the operator default");
    t.equal((await stats(a, STRANGER)).statusCode, 403);

    t.equal((await stats(d, OPERATOR)).statusCode, 200, 'no list of its own: CORS_ORIGINS');
    t.equal((await stats(d, OPERATOR)).headers['access-control-allow-origin'], OPERATOR);
    t.equal((await stats(d, A_ORIGIN)).statusCode, 403);

    const server = await stats(a);
    t.equal(server.statusCode, 200, 'no Origin (a server, curl): not a browser, not checked');
    t.equal(server.headers['access-control-allow-origin'], undefined);
    t.equal((await stats(a, 'http://localhost:3000')).statusCode, 200, 'the API’s own pages (PUBLIC_BASE_URL) are same-origin');

    const enqueue = await app.inject({
      method: 'POST',
      url: '/api/image-queue/process-queue',
      headers: { ...a.auth, origin: A_ORIGIN, prefer: 'wait=0' },
      payload: { recordId: 'r-1', projectId: 'p', photoUrl: 'https://img.example/a.jpg', operations: [{ op: 'resize', width: 10 }] },
    });
    t.equal(enqueue.statusCode, 202, enqueue.body);
    t.equal(enqueue.headers['access-control-allow-origin'], A_ORIGIN);
    t.match(String(enqueue.headers['vary']), /Origin.*Prefer/, 'Prefer adds to Vary: Origin instead of replacing it');
    const refusedPost = await app.inject({
      method: 'POST',
      url: '/api/image-queue/process-queue',
      headers: { ...b.auth, origin: A_ORIGIN },
      payload: { recordId: 'r-2', projectId: 'p', photoUrl: 'https://img.example/a.jpg', operations: [{ op: 'resize', width: 10 }] },
    });
    t.equal(refusedPost.statusCode, 403, 'refused before the job is queued');
    const jobs = await app.inject({ method: 'GET', url: '/api/image-queue/jobs', headers: b.auth });
    t.same(jobs.json().jobs, [], 'b has no job');

    // A page must be able to read a 401 (to fetch a new token): a known origin gets its CORS headers.
    const expired = await app.inject({ method: 'GET', url: '/api/image-queue/queue-stats', headers: { authorization: 'Bearer nope', origin: A_ORIGIN } });
    t.equal(expired.statusCode, 401);
    t.equal(expired.headers['access-control-allow-origin'], A_ORIGIN);
  });

  t.test('remove.bg: preflight with X-Api-Key, the key’s vendor decides', async (t) => {
    const res = await preflight('/v1.0/removebg', A_ORIGIN, 'POST', 'x-api-key,content-type');
    t.equal(res.statusCode, 204, res.body);
    t.equal(res.headers['access-control-allow-origin'], A_ORIGIN);
    t.match(String(res.headers['access-control-allow-headers']), /x-api-key/);

    // a's key from a's page gets past the origin check (to the missing image).
    const own = await app.inject({ method: 'POST', url: '/v1.0/removebg', headers: { 'x-api-key': a.apiKey, origin: A_ORIGIN }, payload: { size: 'auto' } });
    t.equal(own.statusCode, 400, own.body);
    t.equal(own.headers['access-control-allow-origin'], A_ORIGIN);
    t.match(String(own.headers['access-control-expose-headers']), /X-Credits-Charged/);
    // b's key from a's page: refused in remove.bg's error shape, without CORS headers.
    const other = await app.inject({ method: 'POST', url: '/v1.0/removebg', headers: { 'x-api-key': b.apiKey, origin: A_ORIGIN }, payload: { size: 'auto' } });
    t.equal(other.statusCode, 403);
    t.equal(other.headers['access-control-allow-origin'], undefined);
    t.match(other.json(), { errors: [{ code: 'auth_failed', detail: /origin https:\/\/app\.a\.example is not allowed/ }] });
  });

  t.test('changes apply to preflights within VENDOR_CACHE_MS (0 here); deleted vendors drop out', async (t) => {
    const newOrigin = 'https://new.d.example';
    t.equal((await preflight('/api/image-queue/jobs', newOrigin, 'GET')).statusCode, 403);
    t.equal((await patch(d, { corsOrigins: [newOrigin] })).statusCode, 200);
    t.equal((await preflight('/api/image-queue/jobs', newOrigin, 'GET')).statusCode, 204);
    t.equal((await stats(d, newOrigin)).statusCode, 200);
    t.equal((await stats(d, OPERATOR)).statusCode, 403, 'its own list now');
    t.equal((await patch(d, { corsOrigins: null })).statusCode, 200);
    t.equal((await stats(d, OPERATOR)).statusCode, 200, 'null: back to the operator default');
    t.equal((await preflight('/api/image-queue/jobs', newOrigin, 'GET')).statusCode, 403);
    t.equal((await patch(d, { corsOrigins: [] })).statusCode, 200);
    t.equal((await stats(d, OPERATOR)).statusCode, 403, '[]: no browser origin at all');
    t.equal((await preflight('/api/image-queue/jobs', OPERATOR, 'GET')).statusCode, 204, 'the operator default stays known');

    const gone = await testVendor(app, { name: 'Gone' });
    t.equal((await patch(gone, { corsOrigins: ['https://gone.example'] })).statusCode, 200);
    t.equal((await preflight('/api/image-queue/jobs', 'https://gone.example', 'GET')).statusCode, 204);
    t.ok(await deleteVendor(app.db, gone.vendorId));
    t.equal((await preflight('/api/image-queue/jobs', 'https://gone.example', 'GET')).statusCode, 403, 'a deleted vendor’s origins are forgotten');
  });

  t.test('the CLI sets and clears a vendor’s origins', async (t) => {
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', 'scripts/vendor.ts', ...args], {
        cwd: ROOT,
        encoding: 'utf8',
        env: { MYSQL_URL: env['MYSQL_URL'] as string },
      });
    const set = cli('cors', '--id', b.vendorId, '--origins', `${B_ORIGIN},https://shop.b.example`);
    t.equal(set.status, 0, set.stderr);
    t.same(JSON.parse(set.stdout), { vendorId: b.vendorId, corsOrigins: [B_ORIGIN, 'https://shop.b.example'] });
    t.equal((await findVendor(app.db, b.vendorId))?.cors_origins, JSON.stringify([B_ORIGIN, 'https://shop.b.example']));
    t.equal((await stats(b, 'https://shop.b.example')).statusCode, 200);

    const bad = cli('cors', '--id', b.vendorId, '--origins', 'https://shop.b.example/');
    t.equal(bad.status, 2);
    t.match(bad.stderr, /write it as https:\/\/shop\.b\.example/);

    const reset = cli('cors', '--id', b.vendorId, '--default');
    t.equal(reset.status, 0, reset.stderr);
    t.same(JSON.parse(reset.stdout), { vendorId: b.vendorId, corsOrigins: null });
    t.equal((await stats(b, OPERATOR)).statusCode, 200);
  });
});

t.test('a bad CORS_ORIGINS stops the API at start, naming the variable', async (t) => {
  const env = await isolatedEnv(t, { CORS_ORIGINS: 'https://ok.example,https://bad.example/path' });
  await t.rejects(testApp(t, env), /CORS_ORIGINS: .*bad\.example\/path.*write it as https:\/\/bad\.example/);
});
