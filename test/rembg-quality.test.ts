import t from 'tap';
import sharp from 'sharp';
import { readFixture } from './helpers/fixtures.js';
import { multipartBody } from './helpers/multipart.js';
import { rembgApp } from './helpers/rembg.js';

/**
 * Our u2netp cut-out against rembg's own (the reference PNG made by rembg
 * with u2netp from the same photo): the alpha masks must agree, pixel for
 * pixel, as well as two implementations of the same resampling can.
 * Thresholds: IoU of alpha > 127 at least 0.98, mean absolute alpha
 * difference at most 3 of 255.
 */
t.test('the u2netp cut-out of anime-girl-1.jpg matches rembg’s', async (t) => {
  const app = await rembgApp(t);
  const photo = await readFixture('rembg/anime-girl-1.jpg');
  const form = await multipartBody({ model: 'u2netp' }, [{ field: 'file', filename: 'anime-girl-1.jpg', contentType: 'image/jpeg', bytes: photo }]);
  const res = await app.inject({ method: 'POST', url: '/api/remove', ...form });
  t.equal(res.statusCode, 200, res.body.slice(0, 200));
  t.equal(res.headers['content-type'], 'image/png');

  const ours = await sharp(res.rawPayload).raw().toBuffer({ resolveWithObject: true });
  const theirs = await sharp(await readFixture('rembg/anime-girl-1.u2netp.png'))
    .raw()
    .toBuffer({ resolveWithObject: true });
  t.same([ours.info.width, ours.info.height, ours.info.channels], [theirs.info.width, theirs.info.height, 4], 'same size, RGBA');

  let both = 0;
  let either = 0;
  let diff = 0;
  const pixels = theirs.info.width * theirs.info.height;
  for (let i = 0; i < pixels; i++) {
    const a = ours.data[i * 4 + 3]!;
    const b = theirs.data[i * 4 + 3]!;
    if (a > 127 && b > 127) both++;
    if (a > 127 || b > 127) either++;
    diff += Math.abs(a - b);
  }
  const iou = both / either;
  const mad = diff / pixels;
  t.comment(`alpha IoU (alpha > 127): ${iou.toFixed(4)}; mean absolute alpha difference: ${mad.toFixed(3)} of 255`);
  t.ok(iou >= 0.98, `IoU ${iou.toFixed(4)} ≥ 0.98`);
  t.ok(mad <= 3, `mean absolute difference ${mad.toFixed(3)} ≤ 3`);
});
