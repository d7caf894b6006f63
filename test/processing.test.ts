import t, { type Test } from 'tap';
import sharp from 'sharp';
import { isBlurhashValid } from 'blurhash';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor, type TestVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { waitFor } from './helpers/wait.js';
import { findVendorRecord } from '../db/repos/records.js';
import { hashDistance } from '../worker/processors/image-facts.js';
import { presetOperations } from '../jobs/presets.js';
import type { FastifyInstance } from 'fastify';

/**
 * Every processing operation through the real path (API → Bull → worker →
 * storage → MySQL → status API), checked by decoding what was stored. All
 * jobs are queued at once and run in parallel, then each is checked.
 */
type Rgb = [number, number, number];

interface Output {
  name: string;
  url: string;
  format: string;
  width: number;
  height: number;
  step: number;
  op: string;
}

interface Done {
  state: string;
  attempts: number;
  error: { code: string; message: string } | null;
  data: { options: Record<string, unknown> };
  result: Record<string, unknown> & { outputs: Output[]; photoUrl: string | null; width: number | null; height: number | null };
}

/** A 300 × 200 picture stored sideways with EXIF orientation 6 (shown 200 × 300), a red block in its stored top-left corner, camera, date and GPS. */
async function sidewaysPhoto(): Promise<Buffer> {
  const red = await sharp({ create: { width: 60, height: 40, channels: 3, background: '#ff0000' } })
    .png()
    .toBuffer();
  return sharp({ create: { width: 300, height: 200, channels: 3, background: '#2040c0' } })
    .composite([{ input: red, left: 0, top: 0 }])
    .withMetadata({ orientation: 6 })
    .withExif({
      IFD0: { Make: 'Canon', Model: 'EOS R5' },
      IFD2: { DateTimeOriginal: '2024:05:06 07:08:09' },
      IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '51/1 30/1 0/1', GPSLongitudeRef: 'W', GPSLongitude: '0/1 7/1 0/1' },
    })
    .jpeg({ quality: 95 })
    .toBuffer();
}

async function pixelAt(bytes: Buffer, x: number, y: number): Promise<Rgb> {
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const i = (y * info.width + x) * info.channels;
  return [data[i]!, data[i + 1]!, data[i + 2]!];
}

function rgbOf(hex: string | undefined): Rgb {
  const n = parseInt((hex ?? '#000000').slice(1), 16);
  return [n >> 16, (n >> 8) & 255, n & 255];
}

function near(t: Test, actual: Rgb, expected: Rgb, tolerance: number, what: string) {
  t.ok(
    actual.every((v, i) => Math.abs(v - expected[i]!) <= tolerance),
    `${what}: ${JSON.stringify(actual)} within ${tolerance} of ${JSON.stringify(expected)}`,
  );
}

t.test('processing operations and pipelines', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', CONCURRENCY_IMAGE_PROCESSING: '4', JOB_BACKOFF_MS: '200' });
  const app = await testApp(t, env);
  await testWorker(t, env);
  const images = await testServer(t);
  imageHost = images.url;
  const photo = await makeJpeg(600, 400);
  const sideways = await sidewaysPhoto();
  const p3 = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 200, g: 60, b: 40 } } })
    .withIccProfile('p3')
    .jpeg({ quality: 100 })
    .toBuffer();
  const dot = await sharp({ create: { width: 20, height: 20, channels: 4, background: '#00ff00ff' } })
    .png()
    .toBuffer();
  const alpha = await sharp({ create: { width: 100, height: 100, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
    .composite([{ input: dot, left: 40, top: 40 }])
    .png()
    .toBuffer();
  images.route('/photo.jpg', serveBytes(photo, 'image/jpeg'));
  images.route('/photo-small.webp', serveBytes(await sharp(photo).resize(300).webp({ quality: 60 }).toBuffer(), 'image/webp'));
  images.route('/other.jpg', serveBytes(await sharp(sideways).autoOrient().jpeg().toBuffer(), 'image/jpeg'));
  images.route('/sideways.jpg', serveBytes(sideways, 'image/jpeg'));
  images.route('/p3.jpg', serveBytes(p3, 'image/jpeg'));
  images.route('/alpha.png', serveBytes(alpha, 'image/png'));
  const vendor = await testVendor(app);

  const jobs = {
    rotate90: await submit(app, vendor, '/sideways.jpg', [{ op: 'rotate', angle: 90 }]),
    rotate30: await submit(app, vendor, '/photo.jpg', [{ op: 'rotate', angle: 30, background: '#ff0000' }]),
    resizeWidth: await submit(app, vendor, '/photo.jpg', [{ op: 'resize', width: 300 }]),
    resizeNoEnlarge: await submit(app, vendor, '/photo.jpg', [{ op: 'resize', width: 1000 }]),
    resizeEnlarge: await submit(app, vendor, '/photo.jpg', [{ op: 'resize', width: 900, withoutEnlargement: false }]),
    resizeCover: await submit(app, vendor, '/photo.jpg', [{ op: 'resize', width: 200, height: 200, fit: 'cover' }]),
    resizeContain: await submit(app, vendor, '/photo.jpg', [{ op: 'resize', width: 200, height: 200, fit: 'contain', background: '#00ff00' }]),
    resizeOutside: await submit(app, vendor, '/photo.jpg', [{ op: 'resize', width: 200, height: 200, fit: 'outside' }]),
    resizeSideways: await submit(app, vendor, '/sideways.jpg', [{ op: 'resize', height: 150 }]),
    force: await submit(app, vendor, '/photo.jpg', [{ op: 'force_resize', width: 123, height: 77 }]),
    webp: await submit(app, vendor, '/photo.jpg', [{ op: 'convert', format: 'webp', quality: 70 }]),
    avif: await submit(app, vendor, '/photo.jpg', [{ op: 'convert', format: 'avif', effort: 0 }]),
    png: await submit(app, vendor, '/photo.jpg', [{ op: 'convert', format: 'png' }]),
    pngStored: await submit(app, vendor, '/photo.jpg', [{ op: 'convert', format: 'png', effort: 0 }]),
    pngSmallest: await submit(app, vendor, '/photo.jpg', [{ op: 'convert', format: 'png', effort: 9 }]),
    p3: await submit(app, vendor, '/p3.jpg', [{ op: 'convert', format: 'png' }, { op: 'metadata' }]),
    alphaJpeg: await submit(app, vendor, '/alpha.png', [{ op: 'convert', format: 'jpeg' }]),
    variants: await submit(app, vendor, '/photo.jpg', [{ op: 'variants', sizes: { a: 100, b: 200, huge: 5000 }, formats: ['webp', 'jpeg'] }]),
    variantsDefault: await submit(app, vendor, '/photo.jpg', [{ op: 'variants' }]),
    placeholder: await submit(app, vendor, '/photo.jpg', [{ op: 'placeholder' }]),
    placeholderAlpha: await submit(app, vendor, '/alpha.png', [{ op: 'placeholder', size: 8, format: 'png', blur: 0 }]),
    metadata: await submit(app, vendor, '/sideways.jpg', [{ op: 'metadata' }]),
    metaPhoto: await submit(app, vendor, '/photo.jpg', [{ op: 'metadata', colors: 3 }]),
    metaSmall: await submit(app, vendor, '/photo-small.webp', [{ op: 'metadata' }]),
    metaOther: await submit(app, vendor, '/other.jpg', [{ op: 'metadata' }]),
    strip: await submit(app, vendor, '/sideways.jpg', [{ op: 'strip' }]),
    stripThenMeta: await submit(app, vendor, '/sideways.jpg', [{ op: 'strip' }, { op: 'metadata' }]),
    nextgallery: await submit(app, vendor, '/sideways.jpg', { preset: 'nextgallery' }),
    galleryVariants: await submit(app, vendor, '/photo.jpg', { preset: 'gallery-variants', presetOptions: { sizes: { sm: 120, lg: 480 } } }),
    pipeline: await submit(app, vendor, '/sideways.jpg', [
      { op: 'rotate', angle: 90 },
      { op: 'resize', width: 150 },
      { op: 'convert', format: 'webp' },
      { op: 'strip' },
    ]),
  };
  const done = await finish(app, vendor, jobs);
  const file = async (url: string | null | undefined) => {
    const res = await app.inject({ method: 'GET', url: new URL(String(url)).pathname });
    if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode}`);
    return res.rawPayload;
  };
  const only = async (name: keyof typeof jobs) => {
    const job = done[name];
    t.equal(job.state, 'completed', `${name} completed (${JSON.stringify(job.error)})`);
    t.equal(job.result.outputs.length, 1, `${name} lists one output`);
    const bytes = await file(job.result.outputs[0]?.url);
    return { job, bytes, meta: await sharp(bytes).metadata() };
  };

  t.test('rotate: the EXIF orientation is applied first, then the turn', async (t) => {
    const { bytes, meta } = await only('rotate90');
    t.same([meta.width, meta.height], [300, 200], 'shown 200×300 upright, turned 90° clockwise');
    t.equal(meta.orientation, undefined, 'no orientation tag left to apply twice');
    // stored top-left → (orientation 6) top-right → (rotate 90) bottom-right
    near(t, await pixelAt(bytes, 290, 190), [255, 0, 0], 40, 'marker at bottom-right');
    near(t, await pixelAt(bytes, 10, 10), [32, 64, 192], 40, 'background at top-left');
  });

  t.test('rotate by any angle fills the corners with the background', async (t) => {
    const { bytes, meta } = await only('rotate30');
    t.ok(Math.abs(meta.width! - 720) <= 2 && Math.abs(meta.height! - 646) <= 2, `bounding box ${meta.width}×${meta.height}`);
    near(t, await pixelAt(bytes, 1, 1), [255, 0, 0], 40, 'corner');
  });

  t.test('resize keeps the aspect ratio and does not enlarge unless asked', async (t) => {
    t.same([(await only('resizeWidth')).meta.width, (await only('resizeWidth')).meta.height], [300, 200]);
    const noEnlarge = await only('resizeNoEnlarge');
    t.same([noEnlarge.meta.width, noEnlarge.meta.height], [600, 400], 'width 1000 on a 600 px image stays 600');
    const enlarge = await only('resizeEnlarge');
    t.same([enlarge.meta.width, enlarge.meta.height], [900, 600]);
    const cover = await only('resizeCover');
    t.same([cover.meta.width, cover.meta.height], [200, 200]);
    const contain = await only('resizeContain');
    t.same([contain.meta.width, contain.meta.height], [200, 200]);
    near(t, await pixelAt(contain.bytes, 100, 2), [0, 255, 0], 40, 'contain pads with the background');
    const outside = await only('resizeOutside');
    t.same([outside.meta.width, outside.meta.height], [300, 200]);
    const sideways = await only('resizeSideways');
    t.same([sideways.meta.width, sideways.meta.height], [100, 150], 'height applies to the upright image');
    t.equal(sideways.job.result.width, 100);
    t.equal(sideways.job.result.format, 'jpeg', 'format follows the source');
  });

  t.test('force_resize gives exactly the size asked, aspect ignored', async (t) => {
    const { meta } = await only('force');
    t.same([meta.width, meta.height], [123, 77]);
  });

  t.test('convert writes the asked format', async (t) => {
    const webp = await only('webp');
    t.equal(webp.meta.format, 'webp');
    t.match(webp.job.result.outputs[0]?.url, /\/0-convert\.webp$/);
    t.equal((await only('avif')).meta.format, 'heif');
    t.equal((await only('avif')).meta.compression, 'av1');
    const png = await only('png');
    t.equal(png.meta.format, 'png');
    t.same([png.meta.width, png.meta.height], [600, 400]);
    // png's effort is the zlib level: 0 stores, 9 compresses hardest, the default (3) sits between
    const stored = await only('pngStored');
    const smallest = await only('pngSmallest');
    t.ok(stored.bytes.length > 600 * 400 * 3, `effort 0 is stored uncompressed (${stored.bytes.length} bytes)`);
    t.ok(smallest.bytes.length < png.bytes.length && png.bytes.length < stored.bytes.length, 'effort 9 < default < effort 0 in bytes');
    t.same(await sharp(smallest.bytes).raw().toBuffer(), await sharp(png.bytes).raw().toBuffer(), 'the same pixels at every level');
    const flat = await only('alphaJpeg');
    t.equal(flat.meta.format, 'jpeg');
    near(t, await pixelAt(flat.bytes, 2, 2), [255, 255, 255], 8, 'transparency flattened onto white');
    near(t, await pixelAt(flat.bytes, 50, 50), [0, 255, 0], 40, 'opaque content kept');
  });

  t.test('colour profiles are converted to sRGB and not embedded', async (t) => {
    const job = done.p3;
    t.equal(job.state, 'completed', JSON.stringify(job.error));
    const bytes = await file(job.result.outputs[0]?.url);
    const meta = await sharp(bytes).metadata();
    t.notOk(meta.hasProfile, 'no ICC profile in the output');
    near(t, await pixelAt(bytes, 10, 10), [200, 60, 40], 4, 'the sRGB colour the P3 file stands for');
    const raw = await sharp(p3, { ignoreIcc: true }).raw().toBuffer();
    t.ok(Math.abs(raw[0]! - 200) > 8, `the file's own numbers differ (${raw[0]}), so a conversion happened`);
    t.match((job.result['metadata'] as { colorProfile: string }).colorProfile, /P3/);
  });

  t.test('variants: every size in every format, never enlarged', async (t) => {
    const job = done.variants;
    t.equal(job.state, 'completed', JSON.stringify(job.error));
    const list = job.result['variants'] as { name: string; format: string; width: number; height: number; url: string }[];
    t.same(
      list.map((v) => `${v.name}:${v.format}:${v.width}x${v.height}`),
      ['a:webp:100x67', 'a:jpeg:100x67', 'b:webp:200x133', 'b:jpeg:200x133', 'huge:webp:600x400', 'huge:jpeg:600x400'],
    );
    t.equal(job.result.outputs.length, 6);
    for (const v of list) {
      const meta = await sharp(await file(v.url)).metadata();
      t.same([meta.format, meta.width], [v.format, v.width], `${v.name} ${v.format} decodes as such`);
    }
    t.equal(job.result.photoUrl, list[4]?.url, 'photoUrl is the widest variant in the first format');
    const defaults = done.variantsDefault.result['variants'] as { name: string; format: string }[];
    t.same(
      defaults.map((v) => `${v.name}:${v.format}`),
      ['sm:webp', 'sm:avif', 'md:webp', 'md:avif', 'lg:webp', 'lg:avif'],
      'default: sm/md/lg × webp/avif',
    );
  });

  t.test('placeholder: a tiny blurred data URL and a BlurHash', async (t) => {
    const job = done.placeholder;
    t.equal(job.state, 'completed', JSON.stringify(job.error));
    const p = job.result['placeholder'] as { dataUrl: string; blurhash: string; width: number; height: number; format: string; url: string };
    t.match(p.dataUrl, /^data:image\/webp;base64,/);
    const tiny = Buffer.from(p.dataUrl.split(',')[1]!, 'base64');
    const meta = await sharp(tiny).metadata();
    t.same([meta.format, meta.width, meta.height], ['webp', 16, 11]);
    t.ok(tiny.length < 400, `${tiny.length} bytes inline`);
    t.ok(isBlurhashValid(p.blurhash).result, p.blurhash);
    t.equal(p.blurhash.length, 4 + 2 * 4 * 3, '4×3 components');
    t.same(await file(p.url), tiny, 'the stored copy is the inlined image');
    t.equal(job.result.photoUrl, null, 'a placeholder is not the photo');
    const withAlpha = done.placeholderAlpha.result['placeholder'] as { dataUrl: string };
    const alphaMeta = await sharp(Buffer.from(withAlpha.dataUrl.split(',')[1]!, 'base64')).metadata();
    t.same([alphaMeta.format, alphaMeta.width, alphaMeta.hasAlpha], ['png', 8, true], 'keeps transparency in a format that has it');
  });

  t.test('metadata: dimensions, EXIF, colours and a perceptual hash; no file', async (t) => {
    const job = done.metadata;
    t.equal(job.state, 'completed', JSON.stringify(job.error));
    t.same(job.result.outputs, []);
    const m = job.result['metadata'] as Record<string, unknown>;
    t.match(m, {
      width: 200,
      height: 300,
      format: 'jpeg',
      bytes: sideways.length,
      orientation: 6,
      camera: { make: 'Canon', model: 'EOS R5', lens: null },
      takenAt: '2024-05-06T07:08:09',
      hasGps: true,
      hasAlpha: false,
    });
    const colors = m['dominantColors'] as { color: string; share: number }[];
    near(t, rgbOf(colors[0]?.color), [32, 64, 192], 8, 'the main colour is the blue background');
    t.ok(
      colors.some((c) => rgbOf(c.color).every((v, i) => Math.abs(v - [255, 0, 0][i]!) <= 16)),
      `the red block is among ${JSON.stringify(colors)}`,
    );
    t.match(m['phash'], /^[0-9a-f]{16}$/);
    const photoMeta = done.metaPhoto.result['metadata'] as { phash: string; dominantColors: unknown[]; camera: unknown };
    t.ok(photoMeta.dominantColors.length <= 3, 'colors: 3 gives at most three');
    t.equal(photoMeta.camera, null, 'no EXIF, no camera');
    const small = done.metaSmall.result['metadata'] as { phash: string; format: string };
    const other = done.metaOther.result['metadata'] as { phash: string };
    t.equal(small.format, 'webp');
    const same = hashDistance(photoMeta.phash, small.phash);
    const different = hashDistance(photoMeta.phash, other.phash);
    t.ok(same <= 6, `a smaller WebP of the same photo is a near duplicate (distance ${same})`);
    t.ok(different >= 16, `a different picture is not (distance ${different})`);

    const record = await findVendorRecord(app.db, vendor.vendorId, 'proj', recordOf(jobs.metadata));
    t.same(record?.fields['process.metadata'], m, 'the metadata reaches the data record as its own field');
  });

  t.test('strip: a clean upright copy; later steps see no EXIF', async (t) => {
    const { bytes, meta } = await only('strip');
    t.same([meta.width, meta.height], [200, 300], 'upright');
    t.equal(meta.exif, undefined, 'no EXIF (so no GPS)');
    t.equal(meta.xmp, undefined);
    t.equal(meta.icc, undefined);
    t.equal(meta.orientation, undefined);
    near(t, await pixelAt(bytes, 190, 10), [255, 0, 0], 40, 'marker at top-right, as shown');
    const after = done.stripThenMeta.result['metadata'] as Record<string, unknown>;
    t.match(after, { orientation: 1, camera: null, takenAt: null, hasGps: false, colorProfile: null, width: 200, height: 300 });
    // Every output is written without metadata, not only strip's.
    const rotated = await sharp(await file(done.rotate90.result.outputs[0]?.url)).metadata();
    t.equal(rotated.exif, undefined, 'rotate output carries no EXIF either');
  });

  t.test('a pipeline of 4 operations lists 4 outputs, each stored', async (t) => {
    const job = done.pipeline;
    t.equal(job.state, 'completed', JSON.stringify(job.error));
    t.same(
      job.result.outputs.map((o) => `${o.name}.${o.format} ${o.width}x${o.height}`),
      ['0-rotate.jpeg 300x200', '1-resize.jpeg 150x100', '2-convert.webp 150x100', '3-strip.webp 150x100'],
    );
    t.same(
      (job.result['steps'] as { op: string }[]).map((s) => s.op),
      ['rotate', 'resize', 'convert', 'strip'],
    );
    for (const o of job.result.outputs) {
      const meta = await sharp(await file(o.url)).metadata();
      t.same([meta.format, meta.width, meta.height], [o.format, o.width, o.height], `${o.name} decodes as listed`);
    }
    const last = job.result.outputs[3]!;
    t.equal(job.result.photoUrl, last.url);
    near(t, await pixelAt(await file(last.url), 145, 95), [255, 0, 0], 60, 'orientation and turn carried through the chain');
    const record = await findVendorRecord(app.db, vendor.vendorId, 'proj', recordOf(jobs.pipeline));
    t.equal(record?.processed_photo_url, last.url);
    t.equal((record?.fields['process.outputs'] as unknown[]).length, 4);
  });

  t.test('presets run as pipelines: nextgallery and gallery-variants', async (t) => {
    const gallery = done.nextgallery;
    t.equal(gallery.state, 'completed', JSON.stringify(gallery.error));
    t.same(gallery.data.options['operations'], presetOperations('nextgallery'), 'the ledger shows the operations the preset stands for');
    t.same(
      gallery.result.outputs.map((o) => `${o.name} ${o.width}x${o.height}`),
      ['0-strip 200x300', '1-placeholder 11x16'],
    );
    t.equal(gallery.result.photoUrl, gallery.result.outputs[0]?.url, 'the stored copy is the photo');
    t.match(gallery.result['placeholder'], { blurhash: String, dataUrl: /^data:image\/webp;base64,/ });
    const variants = done.galleryVariants;
    t.equal(variants.state, 'completed', JSON.stringify(variants.error));
    t.match(variants.result['metadata'], { width: 600, height: 400, format: 'jpeg' });
    t.same(
      (variants.result['variants'] as { name: string; format: string; width: number }[]).map((v) => `${v.name}:${v.format}:${v.width}`),
      ['sm:webp:120', 'sm:avif:120', 'lg:webp:480', 'lg:avif:480'],
    );
    const record = await findVendorRecord(app.db, vendor.vendorId, 'proj', recordOf(jobs.galleryVariants));
    t.equal((record?.fields['process.variants'] as unknown[]).length, 4, 'variants reach the data record as their own field');
    t.ok(record?.fields['process.metadata'], 'and so does the metadata');
  });
});

t.test('bad options are refused with 400 naming the field', async (t) => {
  const env = await isolatedEnv(t, { MAX_OUTPUT_DIMENSION: '4000' });
  const app = await testApp(t, env);
  const vendor = await testVendor(app);
  const cases: [string, unknown[], RegExp][] = [
    ['width above the schema bound', [{ op: 'resize', width: 99999 }], /operations\/0\/width/],
    ['width above the configured maximum', [{ op: 'resize', width: 5000 }], /operations\/0\/width must be <= 4000/],
    ['force_resize above the maximum', [{ op: 'force_resize', width: 10, height: 4001 }], /operations\/0\/height must be <= 4000/],
    ['force_resize without height', [{ op: 'force_resize', width: 10 }], /operations\/0\/height/],
    ['resize without a size', [{ op: 'rotate', angle: 90 }, { op: 'resize' }], /operations\/1 resize needs width, height or both/],
    ['unknown format', [{ op: 'convert', format: 'gif' }], /operations\/0\/format/],
    ['quality for png', [{ op: 'convert', format: 'png', quality: 50 }], /operations\/0\/quality/],
    ['lossless jpeg', [{ op: 'convert', format: 'jpeg', lossless: true }], /operations\/0\/lossless/],
    ['webp effort too high', [{ op: 'convert', format: 'webp', effort: 8 }], /operations\/0\/effort must be <= 6/],
    ['effort for jpeg', [{ op: 'convert', format: 'jpeg', effort: 3 }], /operations\/0\/effort applies to webp, avif and png only/],
    ['angle not a number', [{ op: 'rotate', angle: 'ninety' }], /operations\/0\/angle/],
    ['bad colour', [{ op: 'rotate', angle: 10, background: 'red' }], /operations\/0\/background/],
    ['unknown option of its own operation', [{ op: 'resize', width: 10, quality: 80 }], /operations\/0\/quality is not an allowed field/],
    ['unknown operation', [{ op: 'sharpen' }], /operations\/0 has unknown op "sharpen" \(one of: rotate, .*\)/],
    ['operation without op', [{ width: 10 }], /operations\/0 needs a string "op"/],
    ['variant wider than the maximum', [{ op: 'variants', sizes: { xl: 4096 } }], /operations\/0\/sizes\/xl must be <= 4000/],
    ['bad variant name', [{ op: 'variants', sizes: { 'X L': 100 } }], /operations\/0\/sizes\/X L is not an allowed field/],
    ['two placeholders', [{ op: 'placeholder' }, { op: 'placeholder' }], /operations\/1\/op placeholder may appear once/],
    ['empty pipeline', [], /operations/],
  ];
  const pipelines: [string, object, RegExp][] = [
    ...cases.map(([what, operations, message]): [string, object, RegExp] => [what, { operations }, message]),
    ['neither operations nor preset', {}, /body\/operations is required \(or a preset\)/],
    ['operations and a preset', { operations: [{ op: 'strip' }], preset: 'nextgallery' }, /body\/preset give either operations or a preset/],
    ['unknown preset', { preset: 'thumbnails' }, /body\/preset/],
    [
      'presetOptions of another preset',
      { preset: 'nextgallery', presetOptions: { quality: 80 } },
      /presetOptions\/quality is not an option of preset nextgallery/,
    ],
    ['preset size above the maximum', { preset: 'gallery-variants', presetOptions: { sizes: { xl: 4096 } } }, /presetOptions\/sizes\/xl must be <= 4000/],
  ];
  for (const [what, pipeline, message] of pipelines) {
    const res = await app.inject({
      method: 'POST',
      url: '/api/image-queue/process-queue',
      headers: vendor.auth,
      payload: { recordId: 'r', projectId: 'p', photoUrl: 'http://127.0.0.1:9/x.jpg', ...pipeline },
    });
    t.equal(res.statusCode, 400, `${what}: 400`);
    const body = res.json() as { code: string; message: string; fields?: { path: string }[] };
    t.equal(body.code, 'BAD_REQUEST');
    t.match(body.message, message, `${what}: ${body.message}`);
    t.ok(body.fields?.length, 'fields listed');
  }
  const queued = await app.db.selectFrom('jobs').select('id').execute();
  t.same(queued, [], 'nothing was queued');
});

t.test('a truncated JPEG fails at once with BAD_IMAGE and is not retried', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing', JOB_BACKOFF_MS: '100' });
  const app = await testApp(t, env);
  await testWorker(t, env);
  const images = await testServer(t);
  const whole = await makeJpeg(800, 600);
  images.route('/cut.jpg', serveBytes(whole.subarray(0, Math.floor(whole.length * 0.6)), 'image/jpeg'));
  const vendor = await testVendor(app);
  const jobId = await submit(app, vendor, '/cut.jpg', [{ op: 'resize', width: 100 }], images.url);
  const done = (await finish(app, vendor, { jobId })).jobId;
  t.equal(done.state, 'failed');
  t.equal(done.error?.code, 'BAD_IMAGE', done.error?.message ?? 'no error');
  t.equal(done.attempts, 1, 'one attempt: a broken file does not get better');
  t.equal(images.hits.get('/cut.jpg'), 1, 'fetched once');
  const record = await findVendorRecord(app.db, vendor.vendorId, 'proj', recordOf(jobId));
  t.equal(record?.processing_status, 'failed');
  t.equal(record?.error_code, 'BAD_IMAGE');
});

let imageHost = '';
const records = new Map<string, string>();

function recordOf(jobId: string): string {
  return records.get(jobId) as string;
}

/** Queues a process job: an operation list, or a body fragment such as `{ preset, presetOptions }`. */
async function submit(app: FastifyInstance, vendor: TestVendor, path: string, pipeline: unknown[] | object, host?: string): Promise<string> {
  if (host) imageHost = host;
  const recordId = `rec-${records.size}`;
  const res = await app.inject({
    method: 'POST',
    url: '/api/image-queue/process-queue',
    headers: vendor.auth,
    payload: { recordId, projectId: 'proj', photoUrl: `${host ?? imageHost}${path}`, ...(Array.isArray(pipeline) ? { operations: pipeline } : pipeline) },
  });
  if (res.statusCode !== 202) throw new Error(`submit ${path}: ${res.statusCode} ${res.body}`);
  const jobId = (res.json() as { jobId: string }).jobId;
  records.set(jobId, recordId);
  return jobId;
}

/** Waits until every job is over, then reads each one's status as the vendor sees it. */
async function finish<K extends string>(app: FastifyInstance, vendor: TestVendor, jobs: Record<K, string>): Promise<Record<K, Done>> {
  const ids = Object.values(jobs) as string[];
  await waitFor(async () => {
    const rows = await app.db.selectFrom('jobs').select('status').where('id', 'in', ids).execute();
    return rows.every((r) => r.status === 'completed' || r.status === 'failed' || r.status === 'dead');
  }, 90_000);
  const out = {} as Record<K, Done>;
  for (const [name, id] of Object.entries(jobs) as [K, string][]) {
    const res = await app.inject({ method: 'GET', url: `/api/image-queue/job/${id}`, headers: vendor.auth });
    out[name] = res.json() as Done;
  }
  return out;
}
