import t from 'tap';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { isolatedEnv } from './helpers/env.js';
import { testApp } from './helpers/app.js';
import { createVendor, findVendor } from '../db/repos/vendors.js';

/**
 * Rate limits of seed 003 per tier, counted in Redis. Limits are small and
 * windows long (one minute) so a test never crosses a window; each tier is
 * hit with twice its limit at once and must accept exactly the limit.
 */
const LIMITS = { processing: 4, backgroundRemoval: 3, bulk: 2, polling: 6, global: 5 };
const URL_A = 'https://images.example.com/a.jpg';

interface Vendor {
  vendorId: string;
  apiKey: string;
  auth: { authorization: string };
}

/** A vendor and its token without going through POST /api/auth/token (which is in the global tier under test). */
async function vendor(app: FastifyInstance, plan = 'standard', role: 'vendor' | 'admin' = 'vendor'): Promise<Vendor> {
  const created = await createVendor(app.db, { name: `v-${plan}`, plan, role });
  const row = await findVendor(app.db, created.vendorId);
  const { token } = await app.signVendorToken(row!);
  return { ...created, auth: { authorization: `Bearer ${token}` } };
}

const bodies = {
  process: (i: number) => ({ recordId: `p${i}`, projectId: 'rl', photoUrl: URL_A, operations: [{ op: 'resize', width: 10 }] }),
  crop: (i: number) => ({ recordId: `c${i}`, projectId: 'rl', photoUrl: URL_A, mode: 'passport' }),
  removeBg: (i: number) => ({ recordId: `b${i}`, projectId: 'rl', photoUrl: URL_A }),
  bulk: (i: number) => ({ projectId: 'rl', items: [{ recordId: `k${i}`, photoUrl: URL_A }] }),
};

function tally(responses: LightMyRequestResponse[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const r of responses) counts[r.statusCode] = (counts[r.statusCode] ?? 0) + 1;
  return counts;
}

t.test('rate limits per tier and vendor', async (t) => {
  const env = await isolatedEnv(t, {
    RATE_LIMIT_PROCESSING_MAX: String(LIMITS.processing),
    RATE_LIMIT_PROCESSING_WINDOW_MS: '60000',
    RATE_LIMIT_BG_REMOVAL_MAX: String(LIMITS.backgroundRemoval),
    RATE_LIMIT_BG_REMOVAL_WINDOW_MS: '60000',
    RATE_LIMIT_BULK_MAX: String(LIMITS.bulk),
    RATE_LIMIT_BULK_WINDOW_MS: '60000',
    RATE_LIMIT_POLLING_MAX: String(LIMITS.polling),
    RATE_LIMIT_POLLING_WINDOW_MS: '60000',
    RATE_LIMIT_GLOBAL_MAX: String(LIMITS.global),
    RATE_LIMIT_GLOBAL_WINDOW_MS: '60000',
  });
  const app = await testApp(t, env);
  const post = (v: Vendor, url: string, payload: object) => app.inject({ method: 'POST', url: `/api/image-queue/${url}`, headers: v.auth, payload });
  const burst = (n: number, send: (i: number) => Promise<LightMyRequestResponse>) => Promise.all(Array.from({ length: n }, (_, i) => send(i)));

  t.test('processing tier: process-queue and crop-face-queue share one counter; exactly the limit passes', async (t) => {
    const a = await vendor(app);
    const responses = await burst(2 * LIMITS.processing, (i) =>
      i % 2 ? post(a, 'crop-face-queue', bodies.crop(i)) : post(a, 'process-queue', bodies.process(i)),
    );
    t.same(tally(responses), { 202: LIMITS.processing, 429: LIMITS.processing });
    const accepted = responses.filter((r) => r.statusCode === 202);
    t.same(accepted.map((r) => r.headers['ratelimit-limit']).sort(), Array(LIMITS.processing).fill(String(LIMITS.processing)));
    t.same(
      accepted.map((r) => Number(r.headers['ratelimit-remaining'])).sort(),
      Array.from({ length: LIMITS.processing }, (_, i) => i),
      'remaining counts down without gaps or repeats',
    );
    for (const r of accepted)
      t.ok(Number(r.headers['ratelimit-reset']) > 0 && Number(r.headers['ratelimit-reset']) <= 60, 'reset in seconds within the window');
    const refused = responses.find((r) => r.statusCode === 429)!;
    t.equal(refused.json().code, 'RATE_LIMITED');
    t.match(refused.json().message, /4 requests per minute in the processing tier/);
    t.equal(refused.headers['ratelimit-remaining'], '0');
    t.ok(Number(refused.headers['retry-after']) > 0 && Number(refused.headers['retry-after']) <= 60, 'Retry-After on 429');
    const jobs = await app.db.selectFrom('jobs').select('id').where('vendor_id', '=', a.vendorId).execute();
    t.equal(jobs.length, LIMITS.processing, 'refused requests queued nothing');

    t.test('another vendor is not affected', async (t) => {
      const b = await vendor(app);
      const res = await post(b, 'process-queue', bodies.process(0));
      t.equal(res.statusCode, 202);
      t.equal(res.headers['ratelimit-remaining'], String(LIMITS.processing - 1));
    });

    t.test('polling is its own tier: a vendor out of processing requests still polls', async (t) => {
      const jobId = accepted[0]!.json().jobId;
      const res = await app.inject({ method: 'GET', url: `/api/image-queue/job/${jobId}`, headers: a.auth });
      t.equal(res.statusCode, 200);
      t.equal(res.headers['ratelimit-limit'], String(LIMITS.polling));
      t.equal((await post(a, 'remove-bg-queue', bodies.removeBg(99))).statusCode, 202, 'and background removal has its own counter');
    });
  });

  t.test('background-removal tier', async (t) => {
    const a = await vendor(app);
    const responses = await burst(2 * LIMITS.backgroundRemoval, (i) => post(a, 'remove-bg-queue', bodies.removeBg(i)));
    t.same(tally(responses), { 202: LIMITS.backgroundRemoval, 429: LIMITS.backgroundRemoval });
    t.equal(responses.find((r) => r.statusCode === 429)!.json().code, 'RATE_LIMITED');
  });

  t.test('bulk tier: all three bulk routes share it', async (t) => {
    const a = await vendor(app);
    const responses = await burst(2 * LIMITS.bulk, (i) =>
      i % 2 ? post(a, 'bulk-remove-bg', bodies.bulk(i)) : post(a, 'bulk-process', { ...bodies.bulk(i), operations: [{ op: 'resize', width: 5 }] }),
    );
    t.same(tally(responses), { 202: LIMITS.bulk, 429: LIMITS.bulk });
    t.equal((await post(a, 'bulk-crop-face', { ...bodies.bulk(9), mode: 'idcard' })).statusCode, 429);
  });

  t.test('polling tier: generous but exact', async (t) => {
    const a = await vendor(app);
    const responses = await burst(2 * LIMITS.polling, () => app.inject({ method: 'GET', url: '/api/image-queue/queue-stats', headers: a.auth }));
    t.same(tally(responses), { 200: LIMITS.polling, 429: LIMITS.polling });
    t.equal((await post(a, 'process-queue', bodies.process(0))).statusCode, 202, 'enqueueing is not blocked by polling');
  });

  t.test('global tier: token exchange per client IP', async (t) => {
    const a = await vendor(app);
    const responses = await burst(2 * LIMITS.global, () => app.inject({ method: 'POST', url: '/api/auth/token', payload: { apiKey: a.apiKey } }));
    t.same(tally(responses), { 200: LIMITS.global, 429: LIMITS.global });
    const other = await app.inject({ method: 'POST', url: '/api/auth/token', payload: { apiKey: a.apiKey }, remoteAddress: '203.0.113.7' });
    t.equal(other.statusCode, 200, 'another client IP has its own counter');
  });

  t.test("another area's route that names no tier: per vendor in polling, per IP in global when anonymous", async (t) => {
    const a = await vendor(app);
    const b = await vendor(app);
    const responses = await burst(2 * LIMITS.polling, () => app.inject({ method: 'GET', url: '/api/persons', headers: a.auth }));
    t.same(tally(responses), { 200: LIMITS.polling, 429: LIMITS.polling });
    t.equal((await app.inject({ method: 'GET', url: '/api/persons', headers: b.auth })).statusCode, 200, 'vendor B has its own counter');
    const anonymous = await app.inject({ method: 'GET', url: '/api/persons', remoteAddress: '198.51.100.9' });
    t.equal(anonymous.statusCode, 401);
    t.equal(anonymous.headers['ratelimit-limit'], String(LIMITS.global), 'counted in the global tier');
  });

  t.test('the unlimited plan is not limited and carries no limit headers', async (t) => {
    const u = await vendor(app, 'unlimited');
    const responses = await burst(3 * LIMITS.processing, (i) => post(u, 'process-queue', bodies.process(i)));
    t.same(tally(responses), { 202: 3 * LIMITS.processing });
    t.notOk(responses[0]!.headers['ratelimit-limit']);
  });

  t.test('an admin sets plans and per-vendor overrides; they apply at once', async (t) => {
    const admin = await vendor(app, 'unlimited', 'admin');
    const c = await vendor(app);
    const patch = (payload: object) => app.inject({ method: 'PATCH', url: `/api/admin/vendors/${c.vendorId}`, headers: admin.auth, payload });

    const tight = await patch({ rateLimits: { processing: { max: 1, windowMs: 60000 } } });
    t.equal(tight.statusCode, 200, tight.body);
    t.same(tight.json().effective.tiers.processing, { max: 1, windowMs: 60000 });
    t.same(tight.json().effective.tiers.backgroundRemoval, { max: LIMITS.backgroundRemoval, windowMs: 60000 }, 'other tiers keep the plan');
    t.same(tally(await burst(3, (i) => post(c, 'process-queue', bodies.process(i)))), { 202: 1, 429: 2 });

    const open = await patch({ rateLimits: { processing: null } });
    t.equal(open.json().effective.tiers.processing, null, 'null lifts the tier');
    t.same(tally(await burst(3, (i) => post(c, 'process-queue', bodies.process(10 + i)))), { 202: 3 });

    const unlimited = await patch({ plan: 'unlimited', rateLimits: null });
    t.equal(unlimited.json().plan, 'unlimited');
    t.same(tally(await burst(2 * LIMITS.backgroundRemoval, (i) => post(c, 'remove-bg-queue', bodies.removeBg(i)))), { 202: 2 * LIMITS.backgroundRemoval });

    const bad = await patch({ plan: 'gold' });
    t.equal(bad.statusCode, 400);
    t.match(bad.json().message, /body\/plan/);
    const badLimit = await patch({ rateLimits: { bulk: { max: -1, windowMs: 1000 } } });
    t.equal(badLimit.statusCode, 400);
    t.match(badLimit.json().message, /body\/rateLimits/);
    t.equal(
      (await app.inject({ method: 'PATCH', url: '/api/admin/vendors/01ARZ3NDEKTSV4RRFFQ69G5FAV', headers: admin.auth, payload: { plan: 'standard' } }))
        .statusCode,
      404,
    );
    t.equal((await app.inject({ method: 'PATCH', url: `/api/admin/vendors/${c.vendorId}`, headers: c.auth, payload: { plan: 'unlimited' } })).statusCode, 403);

    const list = await app.inject({ method: 'GET', url: '/api/admin/vendors?limit=200', headers: admin.auth });
    t.equal(list.statusCode, 200);
    t.ok(list.json().vendors.some((v: { id: string; plan: string }) => v.id === c.vendorId && v.plan === 'unlimited'));
  });
});
