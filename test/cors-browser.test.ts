import t from 'tap';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer, type TestServer } from './helpers/http.js';
import { readFixture } from './helpers/fixtures.js';
import { freePort } from './helpers/private-services.js';

/**
 * Seed 003's frontend from another origin (issue 19), in a real headless
 * Chromium: a vendor's web app on its own origin (a second local server)
 * loads the SDK (bundled for the browser with esbuild) and gets a browser
 * token (scoped to jobs, bound to one project, 15 min) from its own backend,
 * which exchanges the vendor's API key server-side (the key never reaches
 * the page). Against the real API and a real worker
 * it uploads a photo and queues one by URL, polls both to the end with
 * `pollJobUntilComplete` and shows the result image; it reads the exposed
 * response headers. A page on an origin the vendor did not allow cannot
 * read anything.
 */
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = new URL('../test-artifacts/', import.meta.url);

interface FlowResult {
  uploaded: { jobId: string; state: string; result: { photoUrl: string; width: number; height: number } };
  byUrl: { jobId: string; state: string; result: { width: number } };
  natural: [number, number];
  stats: Record<string, unknown>;
  health: { status: string };
  headers: Record<string, string | null>;
  tokens: number;
}

declare global {
  interface Window {
    flow: () => Promise<FlowResult>;
    probe: () => Promise<string>;
  }
}

t.test(
  "seed 003's queueAPI in a browser page on another origin: upload, queue, poll, result shown",
  { skip: !existsSync(CHROMIUM) && `${CHROMIUM} is not installed (bash .ci/system-deps)` },
  async (t) => {
    const port = await freePort();
    const api = `http://127.0.0.1:${port}`;
    const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', PUBLIC_BASE_URL: api });
    const app = await testApp(t, env);
    await app.listen({ host: '127.0.0.1', port });
    await testWorker(t, env);

    const sdk = await build({
      entryPoints: [fileURLToPath(new URL('../sdk/index.ts', import.meta.url))],
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      write: false,
      logLevel: 'silent',
    });
    const sdkJs = Buffer.from(sdk.outputFiles[0]?.text ?? '');
    t.ok(sdkJs.length > 1000, 'the SDK bundles for the browser');
    const photo = await readFixture('rembg/car-1.jpg');

    // The vendor's web app: its page, the SDK, a photo, and its backend's token route.
    const vendor = await testVendor(app, { name: 'Web Studio', plan: 'standard' });
    const admin = await testVendor(app, { name: 'Operator', role: 'admin' });
    const mintedTokens: { scope: string | null; projectId: string | null; expiresIn: number }[] = [];
    const webApp = async (): Promise<TestServer> => {
      const site = await testServer(t);
      site.route('/', serveBytes(Buffer.from(PAGE), 'text/html; charset=utf-8'));
      site.route('/sdk.js', serveBytes(sdkJs, 'text/javascript'));
      site.route('/photo.jpg', serveBytes(photo, 'image/jpeg'));
      site.route('/favicon.ico', (_req, res) => void res.writeHead(204).end());
      site.route('/config.json', serveBytes(Buffer.from(JSON.stringify({ api })), 'application/json'));
      // The vendor's backend: the API key stays here; the page gets a short-lived token.
      site.route('/token', async (_req, res) => {
        const answer = await fetch(`${api}/api/auth/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          // a browser token: only jobs, only this page's project, 15 minutes
          body: JSON.stringify({ apiKey: vendor.apiKey, scope: 'jobs:read jobs:write', projectId: 'web', expiresIn: 900 }),
        });
        const body = (await answer.json()) as { token: string; scope: string | null; projectId: string | null; expiresIn: number };
        mintedTokens.push({ scope: body.scope, projectId: body.projectId, expiresIn: body.expiresIn });
        res.writeHead(answer.status, { 'content-type': 'text/plain' }).end(body.token);
      });
      return site;
    };
    const site = await webApp();
    const stranger = await webApp();
    t.not(new URL(site.url).origin, api, 'the page is on another origin than the API');
    const allowed = await app.inject({
      method: 'PATCH',
      url: `/api/admin/vendors/${vendor.vendorId}`,
      headers: admin.auth,
      payload: { corsOrigins: [site.url] },
    });
    t.equal(allowed.statusCode, 200, allowed.body);

    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    t.teardown(() => browser.close());
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    // What the API answered the page (Playwright sees the raw headers; the page only the exposed ones).
    const fromApi: { url: string; allowOrigin: string | undefined; credentials: string | undefined }[] = [];
    page.on('response', (response) => {
      if (!response.url().startsWith(`${api}/api/`)) return;
      const headers = response.headers();
      fromApi.push({ url: response.url(), allowOrigin: headers['access-control-allow-origin'], credentials: headers['access-control-allow-credentials'] });
    });

    await page.goto(`${site.url}/`);
    await page
      .waitForFunction(() => typeof window.flow === 'function')
      .catch((error: Error) => {
        throw new Error(`the page did not start: ${problems.join('; ') || error.message}`);
      });
    const result = await page.evaluate(() => window.flow());

    t.match(result.uploaded, { state: 'completed', result: { width: 320, height: 240 } }, 'the uploaded photo was processed');
    t.match(result.byUrl, { state: 'completed', result: { width: 100 } }, 'the photo queued by URL was processed');
    t.ok(result.uploaded.result.photoUrl.startsWith(`${api}/files/`), 'the result is served by the API');
    t.same(result.natural, [320, 240], 'the result image is shown in the page (naturalWidth > 0)');
    t.ok(result.natural[0] > 0);
    t.match(result.stats, { scope: 'vendor', imageProcessing: { completed: 2 } }, 'getQueueStats');
    t.match(result.health, { status: String }, 'getWorkerHealth');
    t.match(result.headers['x-request-id'], /^[\w.:-]+$/, 'X-Request-Id is readable by the page');
    t.match(result.headers['ratelimit-remaining'], /^\d+$/, 'RateLimit-Remaining is readable by the page');
    t.equal(result.headers['access-control-allow-credentials'], null);
    t.ok(result.tokens >= 1, 'the page asked its backend for tokens');
    t.same(mintedTokens[0], { scope: 'jobs:read jobs:write', projectId: 'web', expiresIn: 900 }, 'a scoped, project-bound, short-lived browser token');
    t.ok(fromApi.length >= 6, `the page called the API (${fromApi.length} answers)`);
    t.same(
      fromApi.filter((r) => r.allowOrigin !== site.url || r.credentials !== undefined),
      [],
      "every answer allowed the page's origin, never with credentials",
    );

    const img = page.locator('#result');
    t.equal(await img.evaluate((el) => (el as HTMLImageElement).naturalWidth), 320);
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: new URL('cors-browser.png', ARTIFACTS).pathname });
    t.same(problems, [], 'no script errors in the page');

    // The same page on an origin the vendor did not allow: the browser lets it read nothing.
    const other = await browser.newPage();
    await other.goto(`${stranger.url}/`);
    await other.waitForFunction(() => typeof window.probe === 'function');
    t.equal(await other.evaluate(() => window.probe()), 'blocked,blocked', 'a page on another origin can neither read nor queue');
    const jobs = await app.inject({ method: 'GET', url: '/api/image-queue/jobs', headers: vendor.auth });
    t.equal(jobs.json().jobs.length, 2, 'and queued nothing');
  },
);

/** The vendor's page: seed 003's queueAPI from the bundled SDK. */
const PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Vendor dashboard</title></head>
<body>
<h1>Vendor dashboard</h1>
<p id="state">idle</p>
<img id="result" alt="result">
<script type="module">
import { createQueueAPI } from '/sdk.js';

const { api } = await (await fetch('/config.json')).json();
let tokens = 0;
const getToken = async () => {
  tokens++;
  return (await fetch('/token')).text();
};
const queueAPI = createQueueAPI({ baseUrl: api, getToken });
const state = document.querySelector('#state');

window.flow = async () => {
  state.textContent = 'uploading';
  const photo = await (await fetch('/photo.jpg')).blob();
  const queued = await queueAPI.client.upload('process', { data: photo, recordId: 'rec-upload', filename: 'car.jpg' }, {
    projectId: 'web',
    operations: [{ op: 'resize', width: 320 }],
  });
  const byUrl = await queueAPI.client.queueProcessing({
    recordId: 'rec-url',
    projectId: 'web',
    photoUrl: location.origin + '/photo.jpg',
    operations: [{ op: 'resize', width: 100 }],
  });
  state.textContent = 'processing';
  const [uploaded, done] = await Promise.all([
    queueAPI.pollJobUntilComplete(queued.jobId, 60000),
    queueAPI.pollJobUntilComplete(byUrl.jobId, 60000),
  ]);
  const img = document.querySelector('#result');
  img.src = uploaded.result.photoUrl;
  await img.decode();
  state.textContent = 'done';
  const stats = await queueAPI.getQueueStats();
  const health = await queueAPI.getWorkerHealth();
  const status = await queueAPI.getJobStatus(queued.jobId);
  // Exposed headers, read as a page would.
  const raw = await fetch(api + '/api/image-queue/job/' + queued.jobId, { headers: { authorization: 'Bearer ' + (await getToken()) } });
  const headers = {};
  for (const name of ['x-request-id', 'ratelimit-remaining', 'etag', 'access-control-allow-credentials']) headers[name] = raw.headers.get(name);
  return { uploaded: status, byUrl: done, natural: [img.naturalWidth, img.naturalHeight], stats, health, headers, tokens };
};

window.probe = async () => {
  const token = await getToken();
  const body = JSON.stringify({ recordId: 'x', projectId: 'web', photoUrl: location.origin + '/photo.jpg', operations: [{ op: 'resize', width: 10 }] });
  const outcomes = [];
  for (const [path, init] of [
    ['/api/image-queue/queue-stats', {}],
    ['/api/image-queue/process-queue', { method: 'POST', headers: { 'content-type': 'application/json' }, body }],
  ]) {
    try {
      await fetch(api + path, { ...init, headers: { ...init.headers, authorization: 'Bearer ' + token } });
      outcomes.push('read');
    } catch (error) {
      outcomes.push(error instanceof TypeError ? 'blocked' : String(error));
    }
  }
  return outcomes.join(',');
};
</script>
</body>
</html>
`;
