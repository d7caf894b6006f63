import t, { type Test } from 'tap';
import { lookup } from 'node:dns/promises';
import { hostname } from 'node:os';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { queueResize, waitForFinal } from './helpers/jobs.js';
import { fetchSource, type FetchLimits } from '../platform/source-fetch.js';
import { isPublicAddress, parseHostAllowlist } from '../platform/address-guard.js';
import { AppError } from '../jobs/errors.js';

/**
 * SSRF and limits of the one fetcher every source goes through. All test
 * servers are on loopback, which the guard refuses; the allowlist
 * (SOURCE_ALLOWED_PRIVATE_HOSTS) lets one exact host:port through, which is
 * how a redirect from an allowed server to a private one is shown refused.
 */
const strict: FetchLimits = { allowPrivate: false, maxBytes: 100_000, timeoutMs: 2000, maxRedirects: 2 };

async function refusal(t: Test, promise: Promise<unknown>, code: string, message?: RegExp) {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(error instanceof AppError, `refused with an AppError (${String(error)})`);
  t.equal((error as AppError).code, code);
  if (message) t.match((error as AppError).message, message);
  return error as AppError;
}

t.test('private, loopback, link-local and metadata addresses are refused', async (t) => {
  const server = await testServer(t);
  server.route('/a.jpg', serveBytes(Buffer.from('x'), 'image/jpeg'));
  const port = new URL(server.url).port;
  await refusal(t, fetchSource(`http://127.0.0.1:${port}/a.jpg`, strict), 'SOURCE_URL_FORBIDDEN', /127\.0\.0\.1/);
  await refusal(t, fetchSource(`http://[::1]:${port}/a.jpg`, strict), 'SOURCE_URL_FORBIDDEN', /::1/);
  await refusal(t, fetchSource('http://169.254.169.254/latest/meta-data/', strict), 'SOURCE_URL_FORBIDDEN', /169\.254\.169\.254/);
  await refusal(t, fetchSource('http://[::ffff:169.254.169.254]/', strict), 'SOURCE_URL_FORBIDDEN');
  await refusal(t, fetchSource('http://10.0.0.8/x.jpg', strict), 'SOURCE_URL_FORBIDDEN');
  await refusal(t, fetchSource('http://2130706433/x.jpg', strict), 'SOURCE_URL_FORBIDDEN', /127\.0\.0\.1/);
  await refusal(t, fetchSource(`http://localhost:${port}/a.jpg`, strict), 'SOURCE_URL_FORBIDDEN', /localhost/);
  await refusal(t, fetchSource('file:///etc/passwd', strict), 'SOURCE_URL_FORBIDDEN', /scheme file/);
  await refusal(t, fetchSource(`http://user:pw@127.0.0.1:${port}/a.jpg`, strict), 'SOURCE_URL_FORBIDDEN', /credentials/);
  for (const url of ['gopher://example.com:70/_GET', 'ftp://example.com/a.jpg', 'data:image/png;base64,iVBORw0KGgo=', 'ws://example.com/']) {
    await refusal(t, fetchSource(url, strict), 'SOURCE_URL_FORBIDDEN', /scheme/);
  }
  for (const host of [
    '0.0.0.0',
    '0x7f.1',
    '017700000001',
    '[::ffff:127.0.0.1]',
    '[fd00::1]',
    '[fe80::1]',
    '100.64.0.1',
    '192.168.1.1',
    '172.16.0.1',
    '10.255.255.255',
  ]) {
    await refusal(t, fetchSource(`http://${host}:${port}/a.jpg`, strict), 'SOURCE_URL_FORBIDDEN');
  }
  t.equal(server.hits.get('/a.jpg') ?? 0, 0, 'no request reached the server');

  // A name (not a literal) that resolves to a non-public address is refused at connect time.
  const name = hostname();
  const resolved = await lookup(name).catch(() => undefined);
  if (resolved && !isPublicAddress(resolved.address)) {
    await refusal(t, fetchSource(`http://${name}:${port}/a.jpg`, strict), 'SOURCE_URL_FORBIDDEN', /resolves to a private or reserved address/);
    t.equal(server.hits.get('/a.jpg') ?? 0, 0);
  } else {
    t.comment(`skipped the DNS case: ${name} does not resolve to a private address here`);
  }
});

t.test('an allowlisted private host is fetched; its redirect to another private address is refused', async (t) => {
  const a = await testServer(t);
  const b = await testServer(t);
  const jpeg = await makeJpeg(16, 16);
  b.route('/secret.jpg', serveBytes(jpeg, 'image/jpeg'));
  a.route('/photo.jpg', serveBytes(jpeg, 'image/jpeg'));
  a.route('/to-b', (_req, res) => void res.writeHead(302, { location: `${b.url}/secret.jpg` }).end());
  a.route('/to-a', (_req, res) => void res.writeHead(301, { location: '/photo.jpg' }).end());
  a.route('/loop', (_req, res) => void res.writeHead(302, { location: '/loop' }).end());
  a.route('/to-metadata', (_req, res) => void res.writeHead(307, { location: 'http://169.254.169.254/latest/' }).end());
  const allow: FetchLimits = { ...strict, allowedPrivateHosts: parseHostAllowlist(new URL(a.url).host) };

  const ok = await fetchSource(`${a.url}/photo.jpg`, allow);
  t.same(ok.bytes, jpeg, 'the allowlisted host:port is fetched');
  const viaRedirect = await fetchSource(`${a.url}/to-a`, allow);
  t.equal(viaRedirect.finalUrl, `${a.url}/photo.jpg`, 'a redirect within the allowlisted origin is followed');

  await refusal(t, fetchSource(`${a.url}/to-b`, allow), 'SOURCE_URL_FORBIDDEN', /127\.0\.0\.1/);
  t.equal(b.hits.get('/secret.jpg') ?? 0, 0, 'the private server behind the redirect was never contacted');
  await refusal(t, fetchSource(`${a.url}/to-metadata`, allow), 'SOURCE_URL_FORBIDDEN', /169\.254\.169\.254/);
  const loop = await refusal(t, fetchSource(`${a.url}/loop`, allow), 'SOURCE_FETCH_FAILED', /redirected more than 2 times/);
  t.equal(loop.retryable, false);
  await refusal(t, fetchSource(`${b.url}/secret.jpg`, allow), 'SOURCE_URL_FORBIDDEN', /127\.0\.0\.1/);

  t.throws(() => parseHostAllowlist('images.internal'), /port is required/);
  t.same(parseHostAllowlist(' Images.Internal:8080 , [fd00::5]:443,10.0.0.5:80'), ['images.internal:8080', '[fd00::5]:443', '10.0.0.5:80']);
});

t.test('size and time limits', async (t) => {
  const server = await testServer(t);
  const limits: FetchLimits = { allowPrivate: true, maxBytes: 10_000, timeoutMs: 800, maxRedirects: 2 };
  server.route('/declared-big', (_req, res) => void res.writeHead(200, { 'content-length': 20_000 }).end(Buffer.alloc(20_000)));
  server.route('/streamed-big', (_req, res) => {
    res.writeHead(200, { 'content-type': 'image/jpeg' });
    let sent = 0;
    const push = () => {
      if (sent >= 50_000 || res.destroyed) return res.end();
      sent += 5000;
      res.write(Buffer.alloc(5000), () => setTimeout(push, 5));
    };
    push();
  });
  server.route('/slow', (_req, res) => {
    res.writeHead(200, { 'content-type': 'image/jpeg' });
    res.write(Buffer.alloc(100));
    // the rest never comes
  });
  await refusal(t, fetchSource(`${server.url}/declared-big`, limits), 'SOURCE_TOO_LARGE', /20000 bytes/);
  await refusal(t, fetchSource(`${server.url}/streamed-big`, limits), 'SOURCE_TOO_LARGE');
  const started = Date.now();
  const slow = await refusal(t, fetchSource(`${server.url}/slow`, limits), 'SOURCE_TIMEOUT');
  t.equal(slow.retryable, true);
  t.ok(Date.now() - started < 5000, 'the time limit covers the body, not only the headers');
});

t.test('through the worker: a redirect from an allowed host to a private one fails the job, unretried', async (t) => {
  const images = await testServer(t);
  const inside = await testServer(t);
  inside.route('/secret.jpg', serveBytes(await makeJpeg(16, 16), 'image/jpeg'));
  images.route('/to-metadata', (_req, res) => void res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end());
  images.route('/to-inside', (_req, res) => void res.writeHead(307, { location: `${inside.url}/secret.jpg` }).end());
  images.route('/to-file', (_req, res) => void res.writeHead(302, { location: 'file:///etc/passwd' }).end());
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', LOG_LEVEL: 'silent' });
  const app = await testApp(t, env);
  await testWorker(t, { ...env, ALLOW_PRIVATE_SOURCE_URLS: 'false', SOURCE_ALLOWED_PRIVATE_HOSTS: new URL(images.url).host });
  const vendor = await testVendor(app);
  for (const path of ['/to-metadata', '/to-inside', '/to-file']) {
    const job = await waitForFinal(app.db, await queueResize(app, vendor, `${images.url}${path}`));
    t.equal(job.status, 'failed', path);
    t.equal(job.error_code, 'SOURCE_URL_FORBIDDEN', `${path}: ${job.error_message}`);
    t.equal(job.attempts, 1, 'not retried');
  }
  t.equal(inside.hits.get('/secret.jpg') ?? 0, 0, 'the private server behind the redirect was never contacted');
});

t.test('the worker refuses a private source even when the API let it through', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', LOG_LEVEL: 'silent' });
  const app = await testApp(t, env); // the API's own check is off here (ALLOW_PRIVATE_SOURCE_URLS=true)
  await testWorker(t, { ...env, ALLOW_PRIVATE_SOURCE_URLS: 'false' });
  const images = await testServer(t);
  images.route('/p.jpg', serveBytes(await makeJpeg(16, 16), 'image/jpeg'));
  const vendor = await testVendor(app);
  const job = await waitForFinal(app.db, await queueResize(app, vendor, `${images.url}/p.jpg`));
  t.equal(job.status, 'failed');
  t.equal(job.error_code, 'SOURCE_URL_FORBIDDEN');
  t.equal(job.attempts, 1, 'not retried');
  t.equal(images.hits.get('/p.jpg') ?? 0, 0);
});
