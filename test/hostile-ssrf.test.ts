import t from 'tap';
import { lookup } from 'node:dns/promises';
import { hostname } from 'node:os';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testServer, serveBytes } from './helpers/http.js';
import { testWorker } from './helpers/worker.js';
import { makeJpeg } from './helpers/fixtures.js';
import { queueResize, waitForFinal } from './helpers/jobs.js';
import { waitFor } from './helpers/wait.js';
import { addressRefusal, checkUrl, isPublicAddress, parseHostAllowlist } from '../platform/address-guard.js';
import { fetchSource } from '../platform/source-fetch.js';
import { postWebhook } from '../worker/webhooks/deliver.js';
import { AppError } from '../jobs/errors.js';

/**
 * Issue 18, SSRF leftovers: every spelling of an address we must not reach,
 * refused with a clear SOURCE_URL_FORBIDDEN wherever a vendor hands us a URL
 * (photo URLs, background images in both APIs, webhook URLs when set) and
 * again where we connect (after a redirect, at webhook delivery, and for a
 * name whose address is only known at connect time).
 */
const REFUSED: [host: string, why: RegExp][] = [
  // IPv4 spelled in decimal, octal, hex, shortened, with a trailing dot (URL normalizes them all)
  ['2130706433', /loopback address \(127\.0\.0\.1\)/],
  ['017700000001', /loopback address \(127\.0\.0\.1\)/],
  ['0x7f000001', /loopback address \(127\.0\.0\.1\)/],
  ['0x7f.1', /loopback address \(127\.0\.0\.1\)/],
  ['0177.0.0.1', /loopback address \(127\.0\.0\.1\)/],
  ['127.1', /loopback address \(127\.0\.0\.1\)/],
  ['127.0.0.1.', /loopback address \(127\.0\.0\.1\)/],
  ['3232235521', /private address \(192\.168\.0\.1\)/],
  ['0xa9.0xfe.0xa9.0xfe', /cloud metadata address \(169\.254\.169\.254\)/],
  ['0251.0376.0251.0376', /cloud metadata address \(169\.254\.169\.254\)/],
  ['0xa9fea9fe', /cloud metadata address \(169\.254\.169\.254\)/],
  // this network, 0.0.0.0/8
  ['0', /this-network \(0\.0\.0\.0\/8\) address \(0\.0\.0\.0\)/],
  ['0.0.0.0', /this-network/],
  ['0.1.2.3', /this-network/],
  // cloud metadata services
  ['169.254.169.254', /cloud metadata address/],
  ['169.254.170.2', /cloud metadata address/],
  ['168.63.129.16', /cloud metadata address \(168\.63\.129\.16\)/],
  ['100.100.100.200', /cloud metadata address \(100\.100\.100\.200\)/],
  ['192.0.0.192', /cloud metadata address/],
  ['[fd00:ec2::254]', /cloud metadata address \(fd00:ec2::254\)/],
  ['[fd20:ce::254]', /cloud metadata address/],
  ['metadata.google.internal', /cloud metadata service/],
  ['metadata.google.internal.', /cloud metadata service/],
  ['METADATA.GOOGLE.INTERNAL', /cloud metadata service/],
  ['metadata.goog', /cloud metadata service/],
  ['169.254.1.1', /link-local address/],
  // IPv4-mapped, every notation
  ['[::ffff:127.0.0.1]', /IPv4-mapped address of a loopback address \(127\.0\.0\.1\)/],
  ['[::ffff:7f00:1]', /IPv4-mapped address of a loopback/],
  ['[0:0:0:0:0:ffff:7f00:1]', /IPv4-mapped address of a loopback/],
  ['[0000:0000:0000:0000:0000:FFFF:127.0.0.1]', /IPv4-mapped address of a loopback/],
  ['[::FFFF:a9fe:a9fe]', /IPv4-mapped address of a cloud metadata address/],
  ['[::ffff:10.0.0.1]', /IPv4-mapped address of a private address/],
  ['[::ffff:0.0.0.0]', /IPv4-mapped address of a this-network/],
  // IPv4-compatible (deprecated ::a.b.c.d) and SIIT
  ['[::7f00:1]', /IPv4-compatible IPv6 address \(::7f00:1, which embeds 127\.0\.0\.1\)/],
  ['[::127.0.0.1]', /IPv4-compatible IPv6 address/],
  ['[::a9fe:a9fe]', /IPv4-compatible IPv6 address \(::a9fe:a9fe, which embeds 169\.254\.169\.254\)/],
  ['[::8.8.8.8]', /IPv4-compatible IPv6 address/],
  ['[::ffff:0:7f00:1]', /SIIT/],
  // NAT64: the well-known prefix with a private IPv4 inside, and any local-use prefix
  ['[64:ff9b::7f00:1]', /NAT64 address of a loopback address \(127\.0\.0\.1\)/],
  ['[64:ff9b::10.0.0.1]', /NAT64 address of a private address \(10\.0\.0\.1\)/],
  ['[64:ff9b::a9fe:a9fe]', /NAT64 address of a cloud metadata address/],
  ['[64:ff9b:1::a00:1]', /local-use NAT64 address/],
  ['[64:ff9b:1:ffff::8.8.8.8]', /local-use NAT64 address/],
  // 6to4 and Teredo carry an IPv4 address reached through a relay we do not control
  ['[2002:7f00:1::1]', /6to4/],
  ['[2002:a9fe:a9fe::]', /6to4/],
  ['[2001:0:4136:e378:8000:63bf:80ff:fffe]', /Teredo/],
  // the rest of IPv6's special ranges
  ['[::]', /unspecified address/],
  ['[::1]', /loopback address \(::1\)/],
  ['[fe80::1]', /link-local address/],
  ['[fc00::1]', /unique-local/],
  ['[fd12:3456::1]', /unique-local/],
  ['[ff02::1]', /multicast address/],
  ['[100::1]', /discard-only address/],
  ['[2001:db8::1]', /reserved address/],
  // names
  ['localhost', /localhost/],
  ['LocalHost.', /localhost/],
  ['api.localhost', /localhost/],
  // private and reserved IPv4
  ['10.1.2.3', /private address/],
  ['172.16.0.1', /private address/],
  ['192.168.1.1', /private address/],
  ['100.64.0.1', /carrier-grade NAT address/],
  ['192.0.0.8', /reserved address/],
  ['198.18.0.1', /reserved address/],
  ['240.0.0.1', /reserved address/],
  ['255.255.255.255', /broadcast address/],
  ['224.0.0.1', /multicast address/],
];

const ALLOWED = ['8.8.8.8', '1.1.1.1', '[2606:4700:4700::1111]', '[64:ff9b::808:808]', '[64:ff9b::8.8.4.4]', 'images.example.com'];

const strict = { allowPrivate: false, purpose: 'source' };

t.test('every refused form, and the public ones that still pass', async (t) => {
  for (const [host, why] of REFUSED) {
    const error = catching(() => checkUrl(`http://${host}/a.jpg`, strict));
    t.ok(error instanceof AppError && error.code === 'SOURCE_URL_FORBIDDEN', `${host} refused (${String(error)})`);
    t.match(error?.message, why, host);
  }
  for (const host of ALLOWED) {
    t.doesNotThrow(() => checkUrl(`https://${host}/a.jpg`, strict), `${host} passes`);
  }
  t.ok(isPublicAddress('64:ff9b::808:808'), 'NAT64 of a public address is public (DNS64 networks use it for ordinary hosts)');
  t.notOk(isPublicAddress('not-an-address'));
  t.equal(addressRefusal('93.184.215.14'), null);
});

t.test('the API refuses each form where a vendor gives a URL: photo, background image (both APIs), webhook', async (t) => {
  const env = await isolatedEnv(t, { ALLOW_PRIVATE_SOURCE_URLS: 'false', ALLOW_PRIVATE_WEBHOOK_URLS: 'false', ALLOW_HTTP_WEBHOOKS: 'true' });
  const app = await testApp(t, env);
  const vendor = await testVendor(app);
  const jpeg = (await makeJpeg(8, 8)).toString('base64');
  for (const [host, why] of REFUSED) {
    const url = `http://${host}/a.jpg`;
    const photo = await app.inject({
      method: 'POST',
      url: '/api/image-queue/process-queue',
      headers: vendor.auth,
      payload: { recordId: 'r1', projectId: 'p', photoUrl: url, operations: [{ op: 'resize', width: 8 }] },
    });
    t.equal(photo.statusCode, 400, `photoUrl ${host}`);
    t.match(photo.json(), { code: 'SOURCE_URL_FORBIDDEN', message: why, fields: [{ path: 'body/photoUrl' }] }, `photoUrl ${host}`);

    const background = await app.inject({
      method: 'POST',
      url: '/api/image-queue/remove-bg-queue',
      headers: vendor.auth,
      payload: { recordId: 'r1', projectId: 'p', photoUrl: 'https://images.example.com/a.jpg', options: { backgroundImageUrl: url } },
    });
    t.equal(background.statusCode, 400, `backgroundImageUrl ${host}`);
    t.match(background.json(), { code: 'SOURCE_URL_FORBIDDEN', message: why, fields: [{ path: 'body/options/backgroundImageUrl' }] });

    const removebg = await app.inject({
      method: 'POST',
      url: '/v1.0/removebg',
      headers: { 'x-api-key': vendor.apiKey, 'content-type': 'application/json' },
      payload: { image_file_b64: jpeg, bg_image_url: url },
    });
    t.equal(removebg.statusCode, 400, `bg_image_url ${host}`);
    t.match(removebg.body, why, `bg_image_url ${host}: ${removebg.body}`);

    const hook = await app.inject({ method: 'PUT', url: '/api/webhooks', headers: vendor.auth, payload: { webhookUrl: url } });
    t.equal(hook.statusCode, 400, `webhookUrl ${host}`);
    t.match(hook.json(), { code: 'SOURCE_URL_FORBIDDEN', message: why }, `webhookUrl ${host}`);
  }
  const none = await app.db
    .selectFrom('jobs')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  t.equal(Number(none.n), 0, 'no job was queued');
});

t.test('a redirect to any refused form is refused before it is followed', async (t) => {
  const a = await testServer(t);
  const b = await testServer(t);
  const jpeg = await makeJpeg(8, 8);
  b.route('/photo.jpg', serveBytes(jpeg, 'image/jpeg'));
  const limits = { allowPrivate: false, allowedPrivateHosts: parseHostAllowlist(new URL(a.url).host), maxBytes: 100_000, timeoutMs: 3000, maxRedirects: 2 };
  for (const [host, why] of REFUSED.filter((_, i) => i % 3 === 0)) {
    a.route('/hop', (_req, res) => void res.writeHead(302, { location: `http://${host}:${new URL(b.url).port}/photo.jpg` }).end());
    const before = b.hits.get('/photo.jpg') ?? 0;
    const error = await fetchSource(`${a.url}/hop`, limits).then(
      () => undefined,
      (e: unknown) => e as AppError,
    );
    t.equal(error?.code, 'SOURCE_URL_FORBIDDEN', `redirect to ${host}`);
    t.match(error?.message, why, `redirect to ${host}`);
    t.equal(b.hits.get('/photo.jpg') ?? 0, before, `${host}: the target was not contacted`);
  }
});

t.test('a webhook set while allowed is refused at delivery, with the reason in the delivery log', async (t) => {
  const receiver = await testServer(t);
  receiver.route('/hook', (_req, res) => void res.writeHead(200).end('ok'));
  const port = new URL(receiver.url).port;
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'image-processing',
    WEBHOOK_OUTBOX_INTERVAL_MS: '100',
    WEBHOOK_ATTEMPTS: '1',
    ALLOW_HTTP_WEBHOOKS: 'true',
  });
  // The API let the URL through (an operator allowed private receivers then); the worker no longer does.
  const app = await testApp(t, { ...env, ALLOW_PRIVATE_WEBHOOK_URLS: 'true' });
  await testWorker(t, { ...env, ALLOW_PRIVATE_WEBHOOK_URLS: 'false' });
  const images = await testServer(t);
  images.route('/p.jpg', serveBytes(await makeJpeg(16, 16), 'image/jpeg'));
  const vendor = await testVendor(app);
  const set = await app.inject({ method: 'PUT', url: '/api/webhooks', headers: vendor.auth, payload: { webhookUrl: `http://[::ffff:7f00:1]:${port}/hook` } });
  t.equal(set.statusCode, 200, set.body);
  await waitForFinal(app.db, await queueResize(app, vendor, `${images.url}/p.jpg`));
  const delivery = await waitFor(async () => {
    const res = await app.inject({ method: 'GET', url: '/api/webhooks/deliveries', headers: vendor.auth });
    return (res.json() as { deliveries: { outcome: string; error: string | null }[] }).deliveries[0];
  }, 30_000);
  t.equal(delivery.outcome, 'failed');
  t.match(delivery.error, /webhook URL points to an IPv4-mapped address of a loopback address/);
  t.equal(receiver.hits.get('/hook') ?? 0, 0, 'the receiver was never contacted');
});

t.test('a name is judged by the address it resolves to when the connection is made', async (t) => {
  const receiver = await testServer(t);
  receiver.route('/hook', (_req, res) => void res.writeHead(200).end('ok'));
  receiver.route('/a.jpg', serveBytes(Buffer.from('x'), 'image/jpeg'));
  const port = new URL(receiver.url).port;
  const name = hostname();
  const resolved = await lookup(name).catch(() => undefined);
  if (!resolved || isPublicAddress(resolved.address)) {
    t.comment(`skipped: ${name} does not resolve to a private address here`);
    return;
  }
  t.doesNotThrow(() => checkUrl(`http://${name}:${port}/hook`, { allowPrivate: false, purpose: 'webhook' }), 'a name passes the check before connecting');
  for (const attempt of [
    postWebhook(`http://${name}:${port}/hook`, '{}', {}, { allowPrivate: false, allowedPrivateHosts: [], allowHttp: true, timeoutMs: 3000 }),
    fetchSource(`http://${name}:${port}/a.jpg`, { allowPrivate: false, maxBytes: 1000, timeoutMs: 3000, maxRedirects: 0 }),
  ]) {
    const error = await attempt.then(
      () => undefined,
      (e: unknown) => e as AppError,
    );
    t.equal(error?.code, 'SOURCE_URL_FORBIDDEN');
    t.match(error?.message, /URL's host resolves to a private or reserved address$/);
    t.notOk(error?.message.includes(resolved.address), 'the resolved address is not in the message');
    t.notOk(error?.message.includes(name), 'nor the name');
  }
  t.equal((receiver.hits.get('/hook') ?? 0) + (receiver.hits.get('/a.jpg') ?? 0), 0, 'nothing reached the server');
});

function catching(fn: () => unknown): AppError | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    return error as AppError;
  }
}
