import t from 'tap';
import type { RouteOptions } from 'fastify';
import { buildApp } from '../backend/app.js';
import { loadApiConfig } from '../backend/config.js';
import { findVendor } from '../db/repos/vendors.js';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';

/**
 * Auth is route config (issue 22): every route says `auth` and `scopes`, the
 * caller is resolved once before the rate limiter, a route without auth
 * config stops startup, and Idempotency-Key is honoured only where a route
 * opts in.
 */
t.test('auth as route config', async (t) => {
  const env = await isolatedEnv(t);

  t.test('every route declares who may call it, mounted plugins included', async (t) => {
    const routes: RouteOptions[] = [];
    const app = await buildApp(loadApiConfig({ env, processEnv: false }), { logger: false, onRoute: (route) => void routes.push(route) });
    t.teardown(() => app.close());
    await app.ready();
    const auth = (url: string, method = 'GET') =>
      routes.find((r) => r.url === url && [r.method].flat().includes(method))?.config as { auth?: string; scopes?: string[] } | undefined;
    t.ok(routes.length > 30, `${routes.length} routes`);
    t.same(
      routes.filter((r) => !['public', 'vendor', 'admin'].includes((r.config as { auth?: string } | undefined)?.auth ?? '')).map((r) => r.url),
      [],
    );
    t.equal(auth('/api/auth/token', 'POST')?.auth, 'public');
    t.match(auth('/api/image-queue/remove-bg-queue', 'POST'), { auth: 'vendor', scopes: ['jobs:write'], rateLimitTier: 'backgroundRemoval' });
    t.equal(auth('/api/admin/queues')?.auth, 'admin');
    t.equal(auth('/docs/json')?.auth, 'public', 'OpenAPI, mounted');
    t.equal(auth('/admin/queues/api/queues')?.auth, 'admin', 'Bull Board, mounted');
    t.equal(auth('/files/*')?.auth, 'public', 'stored files, mounted');
  });

  t.test('a route without auth config stops startup', async (t) => {
    const app = await buildApp(loadApiConfig({ env, processEnv: false }), { logger: false });
    t.teardown(() => app.close());
    app.get('/forgotten', async () => 'open');
    await t.rejects(async () => app.ready(), /routes without config\.auth .*GET(,HEAD)? \/forgotten/);
  });

  t.test('scopes, roles and idempotency opt-in', async (t) => {
    const app = await testApp(t, env);
    const vendor = await testVendor(app);
    const admin = await testVendor(app, { role: 'admin' });
    const row = await findVendor(app.db, vendor.vendorId);
    const adminRow = await findVendor(app.db, admin.vendorId);
    if (!row || !adminRow) throw new Error('vendors missing');

    const readOnly = (await app.signVendorToken(row, { scopes: ['jobs:read'] })).token;
    const stats = await app.inject({ url: '/api/image-queue/queue-stats', headers: { authorization: `Bearer ${readOnly}` } });
    t.equal(stats.statusCode, 200, 'jobs:read reads');
    const enqueue = await app.inject({
      method: 'POST',
      url: '/api/image-queue/remove-bg-queue',
      headers: { authorization: `Bearer ${readOnly}` },
      payload: { projectId: 'p', recordId: 'r', photoUrl: 'https://example.com/a.png' },
    });
    t.equal(enqueue.statusCode, 403, 'but does not enqueue');
    t.match(enqueue.json().message, /jobs:write/);
    const persons = await app.inject({ url: '/api/persons', headers: { authorization: `Bearer ${readOnly}` } });
    t.equal(persons.statusCode, 403, 'nor read persons');

    const scopedAdmin = (await app.signVendorToken(adminRow, { scopes: ['jobs:read'] })).token;
    t.equal((await app.inject({ url: '/api/admin/queues', headers: admin.auth })).statusCode, 200, 'an admin token opens admin routes');
    t.equal((await app.inject({ url: '/api/admin/queues', headers: { authorization: `Bearer ${scopedAdmin}` } })).statusCode, 403, 'a scoped one does not');
    t.equal((await app.inject({ url: '/api/admin/queues', headers: vendor.auth })).statusCode, 403, "nor a vendor's");
    const anonymous = await app.inject({ url: '/api/admin/queues' });
    t.equal(anonymous.statusCode, 401);

    // Idempotency-Key where a route opts in (admin POSTs, enqueue), not on others.
    const pause = () => app.inject({ method: 'POST', url: '/api/admin/queues/face-crop/pause', headers: { ...admin.auth, 'idempotency-key': 'route-auth-1' } });
    t.equal((await pause()).statusCode, 200);
    t.equal((await pause()).headers['idempotent-replayed'], 'true', 'an opted-in route replays');
    await app.inject({ method: 'POST', url: '/api/admin/queues/face-crop/resume', headers: admin.auth });
    const exchange = () =>
      app.inject({ method: 'POST', url: '/api/auth/token', headers: { 'idempotency-key': 'route-auth-2' }, payload: { apiKey: vendor.apiKey } });
    t.equal((await exchange()).statusCode, 200);
    t.notOk((await exchange()).headers['idempotent-replayed'], 'the token exchange does not');
  });
});
