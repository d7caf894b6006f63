import t from 'tap';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';

/**
 * /api/admin/* and Bull Board (/admin/queues, its sign-in included) count
 * per client IP in their own tier (ADMIN_RATE_LIMIT_PER_MINUTE), whatever
 * the token: a guessed or leaked credential cannot be tried or used without
 * bound, and a vendor's own tiers are not touched.
 */
t.test('admin routes and Bull Board are limited per client IP', async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent', ADMIN_RATE_LIMIT_PER_MINUTE: '3', ADMIN_BOARD_TOKEN: 'board-token-0123456789-abcdefghijkl' });
  const app = await testApp(t, env);
  const admin = await testVendor(app, { role: 'admin' });
  const otherAdmin = await testVendor(app, { role: 'admin', name: 'Second admin' });
  const vendor = await testVendor(app);
  const get = (url: string, remoteAddress: string, headers: Record<string, string>) => app.inject({ url, remoteAddress, headers });

  const codes: number[] = [];
  for (let i = 0; i < 4; i++) codes.push((await get('/api/admin/queues', '198.51.100.1', admin.auth)).statusCode);
  t.same(codes, [200, 200, 200, 429], 'three a minute from one IP, then 429');
  const refused = await get('/api/admin/vendors/', '198.51.100.1', otherAdmin.auth);
  t.equal(refused.statusCode, 429, 'every admin route and every token share the IP count');
  t.match(refused.json(), { code: 'RATE_LIMITED', message: /3 requests per minute per client IP on admin routes/ });
  t.ok(refused.headers['retry-after'], 'with Retry-After');
  t.equal((await get('/api/admin/queues', '198.51.100.2', admin.auth)).statusCode, 200, 'another IP counts apart');
  t.equal((await get('/api/image-queue/jobs', '198.51.100.1', vendor.auth)).statusCode, 200, 'a vendor route from the limited IP is not touched');

  const board: number[] = [];
  for (let i = 0; i < 4; i++) board.push((await get('/admin/queues/api/queues', '198.51.100.3', admin.auth)).statusCode);
  t.same(board, [200, 200, 200, 429], "Bull Board's own API too");

  const guesses: number[] = [];
  for (let i = 0; i < 5; i++) {
    const res = await app.inject({
      method: 'POST',
      url: '/admin/queues/session',
      remoteAddress: '198.51.100.4',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `token=guess-${i}`,
    });
    guesses.push(res.statusCode);
  }
  t.same(guesses, [401, 401, 401, 429, 429], 'guessing the board token is bounded');
  const anonymous: number[] = [];
  for (let i = 0; i < 4; i++) anonymous.push((await get('/api/admin/queues', '198.51.100.5', {})).statusCode);
  t.same(anonymous, [401, 401, 401, 429], 'and so are requests without a token');
});
