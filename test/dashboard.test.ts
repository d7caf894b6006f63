import t from 'tap';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { createVendor } from '../db/repos/vendors.js';
import { freePort } from './helpers/private-services.js';

/**
 * The dashboard in a real headless Chromium against the real API and a
 * worker: sign in with an API key, upload photos, watch the jobs reach
 * completed over the live event stream, see the result images, a batch and
 * the queue/worker panels. A screenshot is kept in test-artifacts/.
 * Also Bull Board at /admin/queues behind the admin token.
 */
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = new URL('../test-artifacts/', import.meta.url);

t.test(
  'the dashboard in headless Chromium: sign in, upload, live progress, results',
  { skip: !existsSync(CHROMIUM) && `${CHROMIUM} is not installed (bash .ci/system-deps)` },
  async (t) => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', PUBLIC_BASE_URL: base, SSE_HEARTBEAT_MS: '2000' });
    const app = await testApp(t, env);
    await app.listen({ host: '127.0.0.1', port });
    await testWorker(t, env);
    const images = await testServer(t);
    images.route('/remote.jpg', serveBytes(await makeJpeg(500, 400), 'image/jpeg'));
    const { apiKey } = await createVendor(app.db, { name: 'Browser Studio', plan: 'unlimited' });

    const dir = await mkdtemp(join(tmpdir(), 'iq-dashboard-'));
    const photos = await Promise.all(
      [
        ['portrait.jpg', 600, 800],
        ['one.jpg', 400, 300],
        ['two.jpg', 300, 300],
      ].map(async ([name, w, h]) => {
        const path = join(dir, name as string);
        await writeFile(path, await makeJpeg(w as number, h as number));
        return path;
      }),
    );

    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    t.teardown(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });

    await page.goto(`${base}/dashboard`);
    t.equal(page.url(), `${base}/dashboard/`, '/dashboard redirects to the page');
    // A wrong key is refused on the page.
    await page.fill('#api-key', 'iq_wrong');
    await page.click('#sign-in-form button');
    await page.waitForFunction(() => document.querySelector('#sign-in-error')?.textContent !== '');
    t.match(await page.textContent('#sign-in-error'), /key|invalid|unauthor/i);
    problems.length = 0; // the refused sign-in logs its 401

    await page.fill('#api-key', apiKey);
    await page.click('#sign-in-form button');
    await page.waitForSelector('#app', { state: 'visible' });
    await page.waitForFunction(() => document.querySelector('#stream-state')?.textContent === 'live');

    // One photo, operations as typed.
    await page.fill('#operations', '[{"op":"resize","width":240}]');
    await page.setInputFiles('#files', photos[0] as string);
    await page.click('#queue');
    const row = page.locator('#jobs tbody tr').first();
    await row.waitFor();
    await page.waitForSelector('#jobs tbody tr[data-state="completed"] img.thumb.after', { timeout: 60_000 });
    const after = page.locator('#jobs tbody tr[data-state="completed"] img.thumb.after').first();
    await page.waitForFunction((img) => (img as HTMLImageElement).complete && (img as HTMLImageElement).naturalWidth > 0, await after.elementHandle(), {
      timeout: 20_000,
    });
    const sizes = await after.evaluate((img) => [(img as HTMLImageElement).naturalWidth, (img as HTMLImageElement).naturalHeight]);
    t.same(sizes, [240, 320], 'the result image is loaded: 600×800 resized to width 240');
    const before = await page
      .locator('#jobs tbody tr img.thumb.before')
      .first()
      .evaluate((img) => (img as HTMLImageElement).naturalWidth);
    t.equal(before, 600, 'the before preview is the uploaded photo');
    t.equal(await row.locator('progress').evaluate((p) => (p as HTMLProgressElement).value), 100);

    // Two photos at once: a batch with its own progress; and a pasted URL.
    await page.setInputFiles('#files', [photos[1] as string, photos[2] as string]);
    await page.fill('#urls', `${images.url}/remote.jpg`);
    await page.click('#queue');
    await page.waitForSelector('#batches .batch[data-finished="true"]', { timeout: 60_000 });
    t.match(await page.textContent('#batches .batch .summary'), /2\/2 done — finished/);
    await page.waitForFunction(() => document.querySelectorAll('#jobs tbody tr[data-state="completed"]').length === 4, undefined, { timeout: 60_000 });

    // Queue stats and worker health panels.
    await page.waitForFunction(
      () => Array.from(document.querySelectorAll('#stats tr')).find((tr) => tr.children[0]?.textContent === 'Processing')?.children[3]?.textContent === '4',
      undefined,
      { timeout: 30_000 },
    );
    await page.waitForFunction(() => document.querySelectorAll('#health li').length > 0, undefined, { timeout: 20_000 });
    t.match(await page.textContent('#health'), /image-processing/);

    await mkdir(ARTIFACTS, { recursive: true });
    const shot = new URL('dashboard.png', ARTIFACTS);
    await page.screenshot({ path: shot.pathname, fullPage: true });
    t.ok(existsSync(shot), `screenshot saved to ${shot.pathname}`);
    t.same(problems, [], 'no script errors in the page');
    const csp = (await page.request.get(`${base}/dashboard/`)).headers()['content-security-policy'];
    t.match(csp, /script-src 'self'/, 'the page is served with a CSP');
  },
);

t.test('Bull Board at /admin/queues opens only with the admin token, sent as a header or swapped for a session cookie', async (t) => {
  const env = await isolatedEnv(t, { ADMIN_BOARD_TOKEN: 'board-token-0123456789abcdef', ADMIN_BOARD_SESSION_SECONDS: '60' });
  const app = await testApp(t, env);
  const vendor = await testVendor(app);
  const admin = await testVendor(app, { role: 'admin' });

  t.equal((await app.inject({ url: '/admin/queues' })).statusCode, 401, 'closed without a token');
  const login = await app.inject({ url: '/admin/queues/', headers: { accept: 'text/html' } });
  t.equal(login.statusCode, 401);
  t.match(login.body, /<form method="post" action="\/admin\/queues\/session">/, 'a browser gets the login form');
  t.equal((await app.inject({ url: '/admin/queues/?token=board-token-0123456789abcdef' })).statusCode, 401, 'a token in the query string opens nothing');
  const asVendor = await app.inject({ url: '/admin/queues', headers: vendor.auth });
  t.equal(asVendor.statusCode, 403, "a vendor's token does not open it");
  t.equal(asVendor.json().code, 'FORBIDDEN');
  t.equal((await app.inject({ url: '/admin/queues/api/queues', headers: vendor.auth })).statusCode, 403, 'nor its API');
  const vendorSession = await app.inject({ method: 'POST', url: '/admin/queues/session', headers: vendor.auth });
  t.equal(vendorSession.statusCode, 403, 'nor a session');
  t.notOk(vendorSession.headers['set-cookie']);
  t.equal((await app.inject({ method: 'POST', url: '/admin/queues/session', headers: { authorization: 'Bearer nope' } })).statusCode, 401);

  const byHeader = await app.inject({ url: '/admin/queues/api/queues', headers: { authorization: 'Bearer board-token-0123456789abcdef' } });
  t.equal(byHeader.statusCode, 200, 'the board token opens it as a bearer token');

  // The login form posts the token in the body: never in a URL.
  const opened = await app.inject({
    method: 'POST',
    url: '/admin/queues/session',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: 'token=board-token-0123456789abcdef',
  });
  t.equal(opened.statusCode, 303, 'the token is swapped for a cookie');
  t.equal(opened.headers.location, '/admin/queues/');
  const setCookie = String(opened.headers['set-cookie']);
  t.match(setCookie, /HttpOnly/);
  t.match(setCookie, /SameSite=Strict/);
  t.match(setCookie, /Max-Age=60/, 'short-lived');
  t.notMatch(setCookie, /board-token-0123456789abcdef/, 'the cookie is a session, not the token');
  const cookie = setCookie.split(';')[0] as string;
  const page = await app.inject({ url: '/admin/queues/', headers: { cookie } });
  t.equal(page.statusCode, 200);
  t.match(page.body, /<html/i);
  const api = await app.inject({ url: '/admin/queues/api/queues', headers: { cookie } });
  t.equal(api.statusCode, 200);
  const names = (api.json() as { queues: { name: string }[] }).queues.map((q) => q.name).sort();
  t.same(names, ['background-removal', 'face-crop', 'image-processing', 'webhooks']);
  t.equal((await app.inject({ url: '/admin/queues/api/queues', headers: { cookie: 'iq_board=forged' } })).statusCode, 401, 'a forged cookie does not');
  t.equal(
    (await app.inject({ url: '/admin/queues/api/queues', headers: { cookie: `iq_board=${admin.token}` } })).statusCode,
    401,
    'nor a vendor token as cookie',
  );

  const byJwt = await app.inject({ url: '/admin/queues/api/queues', headers: admin.auth });
  t.equal(byJwt.statusCode, 200, 'an admin JWT opens it too');
  const adminSession = await app.inject({ method: 'POST', url: '/admin/queues/session', headers: admin.auth });
  t.equal(adminSession.statusCode, 303, 'and gets a session');
  const sessionCookie = String(adminSession.headers['set-cookie']).split(';')[0]?.split('=')[1] as string;
  const asBearer = await app.inject({ url: '/api/admin/vendors', headers: { authorization: `Bearer ${sessionCookie}` } });
  t.equal(asBearer.statusCode, 401, 'a board session is not a bearer token for the API');
});
