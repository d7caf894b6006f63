import t from 'tap';
import { createSigner } from 'fast-jwt';
import { isolatedEnv, TEST_JWT_SECRET } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { deleteVendor } from '../db/repos/vendors.js';

const processBody = (photoUrl = 'https://images.example.com/a.jpg') => ({
  recordId: 'r1',
  projectId: 'p1',
  photoUrl,
  operations: [{ op: 'resize', width: 320 }],
});

t.test('auth, validation and tenancy at the API edge', async (t) => {
  const env = await isolatedEnv(t, { ALLOW_PRIVATE_SOURCE_URLS: 'false' });
  const app = await testApp(t, env);
  const a = await testVendor(app, { name: 'Studio A' });
  const b = await testVendor(app, { name: 'Studio B' });

  t.test('token exchange', async (t) => {
    const ok = await app.inject({ method: 'POST', url: '/api/auth/token', payload: { apiKey: a.apiKey } });
    t.equal(ok.statusCode, 200);
    t.equal(ok.json().expiresIn, 3600);
    t.equal(ok.json().vendorId, a.vendorId);
    const bad = await app.inject({ method: 'POST', url: '/api/auth/token', payload: { apiKey: 'iqk_not-a-real-key-000000000000000000000000000' } });
    t.equal(bad.statusCode, 401);
    t.equal(bad.json().code, 'UNAUTHORIZED');
    const missing = await app.inject({ method: 'POST', url: '/api/auth/token', payload: {} });
    t.equal(missing.statusCode, 400);
    t.match(missing.json().message, /apiKey/);
  });

  t.test('vendor routes need a valid bearer token', async (t) => {
    const url = '/api/image-queue/process-queue';
    const none = await app.inject({ method: 'POST', url, payload: processBody() });
    t.equal(none.statusCode, 401);
    t.same(Object.keys(none.json()).sort(), ['code', 'error', 'message', 'requestId', 'statusCode']);
    t.equal(none.json().requestId, none.headers['x-request-id'], 'the error names the request its X-Request-Id header does');

    const forged = createSigner({ key: 'another-secret-that-is-long-enough-000000', algorithm: 'HS256' })({
      sub: a.vendorId,
      plan: 'unlimited',
      role: 'admin',
    });
    t.equal(
      (await app.inject({ method: 'POST', url, payload: processBody(), headers: { authorization: `Bearer ${forged}` } })).statusCode,
      401,
      'wrong secret',
    );

    const expired = createSigner({ key: TEST_JWT_SECRET, algorithm: 'HS256', expiresIn: 1 })({
      sub: a.vendorId,
      plan: 'standard',
      role: 'vendor',
      iat: Math.floor(Date.now() / 1000) - 100,
      exp: Math.floor(Date.now() / 1000) - 50,
    });
    const exp = await app.inject({ method: 'POST', url, payload: processBody(), headers: { authorization: `Bearer ${expired}` } });
    t.equal(exp.statusCode, 401, 'expired');
    t.match(exp.json().message, /expired/);

    const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    const claims = Buffer.from(JSON.stringify({ sub: a.vendorId, plan: 'unlimited', role: 'admin' })).toString('base64url');
    t.equal(
      (await app.inject({ method: 'POST', url, payload: processBody(), headers: { authorization: `Bearer ${header}.${claims}.` } })).statusCode,
      401,
      'alg none',
    );

    t.equal((await app.inject({ method: 'POST', url, payload: processBody(), headers: { authorization: 'Basic abc' } })).statusCode, 401, 'not a bearer');
  });

  t.test('bad bodies are 400 naming the field', async (t) => {
    const url = '/api/image-queue/process-queue';
    const noOps = await app.inject({ method: 'POST', url, headers: a.auth, payload: { ...processBody(), operations: [] } });
    t.equal(noOps.statusCode, 400);
    t.match(noOps.json().message, /operations/);

    const tooWide = await app.inject({ method: 'POST', url, headers: a.auth, payload: { ...processBody(), operations: [{ op: 'resize', width: 9000 }] } });
    t.equal(tooWide.statusCode, 400);
    t.match(tooWide.json().fields, [{ path: 'body/operations/0/width' }]);

    const typo = await app.inject({ method: 'POST', url, headers: a.auth, payload: { ...processBody(), operations: [{ op: 'resize', widht: 100 }] } });
    t.equal(typo.statusCode, 400);
    t.match(typo.json().message, /widht/);

    const unknownOp = await app.inject({ method: 'POST', url, headers: a.auth, payload: { ...processBody(), operations: [{ op: 'explode' }] } });
    t.equal(unknownOp.statusCode, 400);

    const noRecord = await app.inject({ method: 'POST', url, headers: a.auth, payload: { ...processBody(), recordId: undefined } });
    t.equal(noRecord.statusCode, 400);
    t.match(noRecord.json().message, /recordId/);

    const notJson = await app.inject({ method: 'POST', url, headers: { ...a.auth, 'content-type': 'application/json' }, payload: '{"broken' });
    t.equal(notJson.statusCode, 400);
  });

  t.test("the vendor is the token's, never the body's", async (t) => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/image-queue/process-queue',
      headers: a.auth,
      payload: { ...processBody(), vendorId: b.vendorId },
    });
    t.equal(res.statusCode, 403);
    t.equal(res.json().code, 'FORBIDDEN');
    const same = await app.inject({
      method: 'POST',
      url: '/api/image-queue/process-queue',
      headers: a.auth,
      payload: { ...processBody(), vendorId: a.vendorId },
    });
    t.equal(same.statusCode, 202);
  });

  t.test("another vendor's job is 404, as is a job that does not exist", async (t) => {
    const res = await app.inject({ method: 'POST', url: '/api/image-queue/process-queue', headers: a.auth, payload: processBody() });
    const { jobId } = res.json();
    t.equal((await app.inject({ method: 'GET', url: `/api/image-queue/job/${jobId}`, headers: a.auth })).statusCode, 200);
    const foreign = await app.inject({ method: 'GET', url: `/api/image-queue/job/${jobId}`, headers: b.auth });
    t.equal(foreign.statusCode, 404);
    const nothing = await app.inject({ method: 'GET', url: '/api/image-queue/job/01ARZ3NDEKTSV4RRFFQ69G5FAV', headers: b.auth });
    const { requestId: _a, ...foreignBody } = foreign.json();
    const { requestId: _b, ...nothingBody } = nothing.json();
    t.same(foreignBody, nothingBody, "B cannot tell A's job from a missing one (only the request ids differ)");
  });

  t.test('source URLs to private addresses are refused when the allow flag is off', async (t) => {
    for (const url of [
      'http://127.0.0.1/a.jpg',
      'http://[::1]/a.jpg',
      'http://10.1.2.3/a.jpg',
      'http://169.254.169.254/latest/meta-data',
      'http://localhost:8080/x.png',
      'file:///etc/passwd',
      'gopher://example.com/',
    ]) {
      const res = await app.inject({ method: 'POST', url: '/api/image-queue/process-queue', headers: a.auth, payload: processBody(url) });
      t.equal(res.statusCode, 400, url);
      t.match(res.json().code, /^SOURCE_URL_(FORBIDDEN|INVALID)$/, url);
    }
  });

  t.test("a deleted vendor's token stops working", async (t) => {
    const c = await testVendor(app, { name: 'Studio C' });
    t.equal((await app.inject({ method: 'GET', url: '/api/image-queue/job/01ARZ3NDEKTSV4RRFFQ69G5FAV', headers: c.auth })).statusCode, 404);
    await deleteVendor(app.db, c.vendorId);
    t.equal((await app.inject({ method: 'GET', url: '/api/image-queue/job/01ARZ3NDEKTSV4RRFFQ69G5FAV', headers: c.auth })).statusCode, 401);
  });

  t.test('unknown routes are a 404 in the usual shape', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/api/nope' });
    t.equal(res.statusCode, 404);
    t.equal(res.json().code, 'NOT_FOUND');
  });
});
