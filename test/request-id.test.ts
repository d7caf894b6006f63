import t from 'tap';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';

/** Every answer carries X-Request-Id, and every error body names the same id (the caller's, when it sent a usable one). */
t.test('X-Request-Id on every response, requestId in error bodies', async (t) => {
  const env = await isolatedEnv(t);
  const app = await testApp(t, env);
  const vendor = await testVendor(app);

  const ok = await app.inject({ method: 'GET', url: '/api/image-queue/queue-stats', headers: vendor.auth });
  t.equal(ok.statusCode, 200);
  t.match(ok.headers['x-request-id'], /^[\w.:-]{8,}$/, 'a success names its request');

  const missing = await app.inject({ method: 'GET', url: '/api/nowhere' });
  t.equal(missing.statusCode, 404);
  t.equal(missing.json().requestId, missing.headers['x-request-id'], 'an unknown route');

  const bad = await app.inject({
    method: 'POST',
    url: '/api/image-queue/process-queue',
    headers: { ...vendor.auth, 'x-request-id': 'trace-abc.123' },
    payload: {},
  });
  t.equal(bad.statusCode, 400);
  t.equal(bad.headers['x-request-id'], 'trace-abc.123', "the caller's id is kept");
  t.equal(bad.json().requestId, 'trace-abc.123');

  const odd = await app.inject({ method: 'GET', url: '/api/image-queue/queue-stats', headers: { ...vendor.auth, 'x-request-id': 'not an id <script>' } });
  t.not(odd.headers['x-request-id'], 'not an id <script>', 'an id that does not look like one is replaced');

  const removebg = await app.inject({ method: 'POST', url: '/v1.0/removebg', payload: {} });
  t.equal(removebg.statusCode, 403);
  t.equal(removebg.json().requestId, removebg.headers['x-request-id'], 'the remove.bg routes too');
});
