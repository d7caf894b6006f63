import sharp from 'sharp';
import { runSharp } from '../../platform/images.js';
import type { RgbImage } from './engine.js';
import { toOutput, toSource, type Placement } from './geometry.js';

/**
 * Draws the output photo of a placement from the source, with libvips doing
 * the pixel work (off the JavaScript thread):
 *
 * 1. cut the part of the source the output window needs (plus a margin for
 *    the interpolator), downscaling it with a proper filter first when the
 *    crop shrinks the face, since an affine transform does not antialias;
 * 2. rotate and scale it with one affine transform (bicubic);
 * 3. cut the exact output window, padding with `pad` wherever the photo
 *    ends.
 */
export interface Rgb {
  r: number;
  g: number;
  b: number;
}

export interface Rendered extends RgbImage {
  /** output pixels on each side that lie outside the source photo (padded) */
  padding: { top: number; right: number; bottom: number; left: number };
}

export async function renderPlacement(image: RgbImage, pl: Placement, pad: Rgb): Promise<Rendered> {
  const region = sourceRegion(image, pl);
  const padding = paddingOf(image, pl);
  if (!region) return { data: solid(pl.width, pl.height, pad), width: pl.width, height: pl.height, padding };

  return runSharp(async () => {
    const shrink = Math.min(1, pl.scale);
    const rw = Math.max(1, Math.round(region.width * shrink));
    const rh = Math.max(1, Math.round(region.height * shrink));
    const kx = rw / region.width;
    const ky = rh / region.height;
    // source point p = region origin + (q.x / kx, q.y / ky) for a point q of the (shrunk) region
    const c = Math.cos(pl.angle) * pl.scale;
    const s = Math.sin(pl.angle) * pl.scale;
    const matrix: [[number, number], [number, number]] = [
      [c / kx, s / ky],
      [-s / kx, c / ky],
    ];
    const origin = toOutput(pl, { x: region.left, y: region.top });

    let pipeline = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).extract(region);
    if (shrink < 1) pipeline = pipeline.resize(rw, rh, { fit: 'fill', kernel: 'lanczos3' });
    const canvas = await pipeline.affine(matrix, { background: pad, interpolator: sharp.interpolators.bicubic }).raw().toBuffer({ resolveWithObject: true });

    // libvips sizes the affine's output to the bounding box of the
    // transformed input; its first pixel sits at the rounded box corner.
    const corners = [
      [0, 0],
      [rw, 0],
      [0, rh],
      [rw, rh],
    ].map(([x, y]) => ({ x: matrix[0][0] * (x as number) + matrix[0][1] * (y as number), y: matrix[1][0] * (x as number) + matrix[1][1] * (y as number) }));
    const boxLeft = Math.round(Math.min(...corners.map((p) => p.x)));
    const boxTop = Math.round(Math.min(...corners.map((p) => p.y)));
    // output pixel (0, 0) in canvas pixels
    const left = Math.round(-origin.x - boxLeft);
    const top = Math.round(-origin.y - boxTop);

    const cw = canvas.info.width;
    const ch = canvas.info.height;
    const x0 = Math.max(0, left);
    const y0 = Math.max(0, top);
    const x1 = Math.min(cw, left + pl.width);
    const y1 = Math.min(ch, top + pl.height);
    if (x1 <= x0 || y1 <= y0) return { data: solid(pl.width, pl.height, pad), width: pl.width, height: pl.height, padding };
    const data = await sharp(canvas.data, { raw: { width: cw, height: ch, channels: 3 } })
      .extract({ left: x0, top: y0, width: x1 - x0, height: y1 - y0 })
      .extend({ left: x0 - left, top: y0 - top, right: left + pl.width - x1, bottom: top + pl.height - y1, background: pad })
      .raw()
      .toBuffer();
    return { data, width: pl.width, height: pl.height, padding };
  });
}

/** The source rectangle (clipped to the photo) whose pixels the output window shows, with a margin for interpolation; null when the window misses the photo. */
function sourceRegion(image: RgbImage, pl: Placement): { left: number; top: number; width: number; height: number } | null {
  const corners = windowCorners(pl).map((q) => toSource(pl, q));
  const margin = 3 / Math.min(1, pl.scale) + 2;
  const left = Math.max(0, Math.floor(Math.min(...corners.map((p) => p.x)) - margin));
  const top = Math.max(0, Math.floor(Math.min(...corners.map((p) => p.y)) - margin));
  const right = Math.min(image.width, Math.ceil(Math.max(...corners.map((p) => p.x)) + margin));
  const bottom = Math.min(image.height, Math.ceil(Math.max(...corners.map((p) => p.y)) + margin));
  if (right <= left || bottom <= top) return null;
  return { left, top, width: right - left, height: bottom - top };
}

/** How far, in output pixels, the photo's edges fall inside the output window on each side (0 when the photo covers that side). */
function paddingOf(image: RgbImage, pl: Placement): Rendered['padding'] {
  const photo = [
    { x: 0, y: 0 },
    { x: image.width, y: 0 },
    { x: 0, y: image.height },
    { x: image.width, y: image.height },
  ].map((p) => toOutput(pl, p));
  // With a small rotation, the photo's edges are nearly axis-aligned in the output; the innermost corner of each side bounds it.
  const [tl, tr, bl, br] = photo as [(typeof photo)[0], (typeof photo)[0], (typeof photo)[0], (typeof photo)[0]];
  const clamp = (v: number, max: number) => Math.max(0, Math.min(max, Math.ceil(v)));
  return {
    top: clamp(Math.max(tl.y, tr.y), pl.height),
    left: clamp(Math.max(tl.x, bl.x), pl.width),
    bottom: clamp(pl.height - Math.min(bl.y, br.y), pl.height),
    right: clamp(pl.width - Math.min(tr.x, br.x), pl.width),
  };
}

function windowCorners(pl: Placement) {
  return [
    { x: 0, y: 0 },
    { x: pl.width, y: 0 },
    { x: 0, y: pl.height },
    { x: pl.width, y: pl.height },
  ];
}

function solid(width: number, height: number, { r, g, b }: Rgb): Buffer {
  const data = Buffer.alloc(width * height * 3);
  for (let i = 0; i < data.length; i += 3) {
    data[i] = r;
    data[i + 1] = g;
    data[i + 2] = b;
  }
  return data;
}

/**
 * The colour to pad with when the background is kept: the mean of the
 * photo's outermost pixels along the edges the output window crosses, which
 * is what the backdrop looks like where the photo ends. Mid grey when the
 * window crosses no edge (nothing is padded then anyway).
 */
export function edgeColour(image: RgbImage, pl: Placement): Rgb {
  const corners = windowCorners(pl).map((q) => toSource(pl, q));
  const minX = Math.min(...corners.map((p) => p.x));
  const maxX = Math.max(...corners.map((p) => p.x));
  const minY = Math.min(...corners.map((p) => p.y));
  const maxY = Math.max(...corners.map((p) => p.y));
  const depth = Math.max(1, Math.round(Math.min(image.width, image.height) * 0.01));
  const xFrom = clampInt(minX, image.width);
  const xTo = clampInt(maxX, image.width);
  const yFrom = clampInt(minY, image.height);
  const yTo = clampInt(maxY, image.height);
  const strips: [number, number, number, number][] = [];
  if (minY < 0) strips.push([xFrom, 0, xTo, depth]);
  if (maxY > image.height) strips.push([xFrom, image.height - depth, xTo, image.height]);
  if (minX < 0) strips.push([0, yFrom, depth, yTo]);
  if (maxX > image.width) strips.push([image.width - depth, yFrom, image.width, yTo]);
  let r = 0;
  let g = 0;
  let b = 0;
  let n = 0;
  for (const [x0, y0, x1, y1] of strips) {
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const i = (y * image.width + x) * 3;
        r += image.data[i] as number;
        g += image.data[i + 1] as number;
        b += image.data[i + 2] as number;
        n++;
      }
    }
  }
  if (n === 0) return { r: 128, g: 128, b: 128 };
  return { r: Math.round(r / n), g: Math.round(g / n), b: Math.round(b / n) };
}

function clampInt(v: number, max: number): number {
  return Math.max(0, Math.min(max, Math.round(v)));
}
