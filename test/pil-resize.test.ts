import { fileURLToPath } from 'node:url';
import t from 'tap';
import sharp from 'sharp';
import { resizeChannelLanczos } from '../rembg/pil-resize.js';

/**
 * rembg resizes its mask with Pillow's Lanczos; ours must give the same
 * values. The references were made by Pillow itself (see the fixtures'
 * README): enlarging both ways (the seven-tap paths), shrinking (the general
 * path), one direction only, and one of each.
 */
const dir = fileURLToPath(new URL('./fixtures/pil-lanczos/', import.meta.url));

async function grey(file: string) {
  const { data, info } = await sharp(`${dir}${file}`).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

t.test('the same values as Pillow’s Image.resize(…, LANCZOS)', async (t) => {
  const mask = await grey('mask-64x48.png');
  t.same([mask.width, mask.height], [64, 48]);
  for (const [w, h] of [
    [200, 150],
    [31, 17],
    [64, 150],
    [200, 48],
    [97, 23],
  ] as const) {
    const reference = await grey(`lanczos-${w}x${h}.png`);
    const ours = resizeChannelLanczos(mask.data, mask.width, mask.height, w, h);
    t.equal(ours.length, w * h, `${w}×${h}: size`);
    let differing = 0;
    let largest = 0;
    for (let i = 0; i < ours.length; i++) {
      const d = Math.abs(ours[i]! - reference.data[i]!);
      if (d > 0) differing++;
      largest = Math.max(largest, d);
    }
    t.equal(differing, 0, `${w}×${h}: every value equal (largest difference ${largest})`);
  }
});

t.test('the same size is a copy; a wrong length is refused', async (t) => {
  const mask = await grey('mask-64x48.png');
  const same = resizeChannelLanczos(mask.data, 64, 48, 64, 48);
  t.ok(same.equals(mask.data));
  t.not(same.buffer, mask.data.buffer, 'not the caller’s memory');
  t.throws(() => resizeChannelLanczos(mask.data.subarray(1), 64, 48, 10, 10), /expected 64×48 values/);
});
