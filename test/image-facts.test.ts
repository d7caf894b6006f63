import t from 'tap';
import sharp from 'sharp';
import { iccDescription, isSrgbProfile } from '../platform/icc.js';
import { dominantColors, hashDistance, readExif } from '../worker/processors/image-facts.js';
import { openFrame, toPixels } from '../worker/processors/pixels.js';
import { inspectImage } from '../platform/images.js';

/** The pieces of the metadata operation and the colour fast path, on images made here. */
const flat = (background: string, profile?: string) => {
  const image = sharp({ create: { width: 32, height: 32, channels: 3, background } });
  return (profile ? image.withIccProfile(profile) : image).jpeg({ quality: 100 }).toBuffer();
};

t.test('ICC: names, and sRGB told apart from other profiles', async (t) => {
  const srgb = (await sharp(await flat('#808080', 'srgb')).metadata()).icc;
  const p3 = (await sharp(await flat('#808080', 'p3')).metadata()).icc;
  const cmyk = (await sharp(await flat('#808080', 'cmyk')).metadata()).icc;
  t.equal(iccDescription(srgb), 'sRGB');
  t.ok(isSrgbProfile(srgb), 'sRGB');
  t.notOk(isSrgbProfile(p3), `not ${iccDescription(p3)}`);
  t.notOk(isSrgbProfile(cmyk), `not ${iccDescription(cmyk)}`);
  t.notOk(isSrgbProfile(undefined), 'no profile');
  t.notOk(isSrgbProfile(Buffer.alloc(200)), 'garbage');
  t.equal(iccDescription(Buffer.from('short')), null);
});

t.test('skipping an embedded sRGB profile gives the same pixels; other profiles are still converted', async (t) => {
  for (const [profile, colour] of [
    ['srgb', '#c83c28'],
    ['p3', '#c83c28'],
  ] as const) {
    const bytes = await flat(colour, profile);
    const info = await inspectImage(bytes, 1e6);
    const converted = await toPixels(openFrame({ kind: 'encoded', bytes, info: { ...info, srgbProfile: false } }));
    const fast = await toPixels(openFrame({ kind: 'encoded', bytes, info }));
    const diff = Math.max(...[0, 1, 2].map((i) => Math.abs(converted.data[i]! - fast.data[i]!)));
    t.ok(diff <= 2, `${profile}: ${[...converted.data.subarray(0, 3)]} vs ${[...fast.data.subarray(0, 3)]}`);
    t.ok(Math.abs(converted.data[0]! - 0xc8) <= 3, `${profile}: the sRGB colour comes back (${converted.data[0]})`);
  }
});

t.test('EXIF facts', async (t) => {
  const tagged = await sharp(await flat('#808080'))
    .withMetadata({ orientation: 8 })
    .withExif({
      IFD0: { Make: 'FUJIFILM', Model: 'X-T4' },
      IFD2: { DateTimeOriginal: '2023:12:31 23:59:58', OffsetTimeOriginal: '+09:00', LensModel: 'XF23mm' },
    })
    .jpeg()
    .toBuffer();
  t.same(await readExif((await sharp(tagged).metadata()).exif), {
    orientation: 8,
    camera: { make: 'FUJIFILM', model: 'X-T4', lens: 'XF23mm' },
    takenAt: '2023-12-31T23:59:58+09:00',
    hasGps: false,
  });
  t.same(await readExif(undefined), { orientation: 1, camera: null, takenAt: null, hasGps: false });
  t.same(await readExif(Buffer.from('Exif\0\0garbage-not-tiff')), { orientation: 1, camera: null, takenAt: null, hasGps: false }, 'unreadable EXIF is none');
});

t.test('dominant colours: shares of the opaque pixels, largest first', async (t) => {
  // 3/4 blue, 1/4 orange, and a transparent half that must not count
  const data = Buffer.alloc(16 * 16 * 4);
  for (let y = 0; y < 16; y++)
    for (let x = 0; x < 16; x++) {
      const i = (y * 16 + x) * 4;
      const colour = y >= 8 ? [0, 0, 0, 0] : x < 12 ? [20, 40, 200, 255] : [250, 140, 10, 255];
      data.set(colour, i);
    }
  const colours = dominantColors({ data, width: 16, height: 16, channels: 4 }, 5);
  t.same(colours, [
    { color: '#1428c8', share: 0.75 },
    { color: '#fa8c0a', share: 0.25 },
  ]);
  t.same(dominantColors({ data: Buffer.alloc(4 * 4), width: 2, height: 2, channels: 4 }, 3), [], 'nothing opaque, no colours');
});

t.test('hash distance counts differing bits', async (t) => {
  t.equal(hashDistance('0000000000000000', '0000000000000000'), 0);
  t.equal(hashDistance('ffffffffffffffff', '0000000000000000'), 64);
  t.equal(hashDistance('8000000000000001', '0000000000000000'), 2);
});
