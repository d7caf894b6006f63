import sharp from 'sharp';
import { AppError } from '../../jobs/errors.js';
import {
  MAX_MARGIN_PX,
  parseCropMargin,
  parsePosition,
  parseRoi,
  parseScale,
  resolveLength,
  roiRect,
  type Margin,
  type Position,
} from '../../jobs/cutout-options.js';
import type { RemoveBgOptions } from '../../jobs/payloads.js';
import { zipStored } from '../../platform/zip.js';

/**
 * What a background removal does to rembg's cut-out before it is stored:
 * region of interest, subject scale and position, crop with margin, the
 * matte alone (channels=alpha), a background colour or image, and the
 * encoding (png, webp, jpeg, or remove.bg's zip of colour JPEG + alpha PNG).
 * Works on one raw RGBA copy of the cut-out; every step keeps the pixel count
 * within the source's (a margin adds at most 50 % of the subject per side).
 */
export type CutoutFormat = NonNullable<RemoveBgOptions['format']>;

export interface CutoutPlan {
  format: CutoutFormat;
  /** #rrggbb or #rrggbbaa */
  background: string | null;
  /** the bytes of the background image (already fetched and checked) */
  backgroundImage: Buffer | null;
  channels: 'rgba' | 'alpha';
  crop: boolean;
  cropMargin: Margin | null;
  scale: number | null;
  position: Position | null;
  roi: NonNullable<ReturnType<typeof parseRoi>> | null;
}

export interface FinishedCutout {
  data: Buffer;
  width: number;
  height: number;
}

/** Alpha at or below this counts as empty when finding the subject (rembg leaves faint noise in the background). */
const EMPTY_ALPHA = 8;
export const WEBP_QUALITY = 90;
export const JPEG_QUALITY = 92;
const TRANSPARENT = { r: 0, g: 0, b: 0, alpha: 0 };

/** The plan of a job's options (their syntax and ranges were checked at enqueue). */
export function cutoutPlan(options: RemoveBgOptions, backgroundImage: Buffer | null): CutoutPlan {
  const format = options.format ?? 'png';
  return {
    format,
    background: options.background ?? (format === 'jpeg' && !backgroundImage ? '#ffffff' : null),
    backgroundImage,
    channels: options.channels ?? 'rgba',
    crop: options.crop ?? false,
    cropMargin: options.cropMargin ? (parseCropMargin(options.cropMargin) ?? null) : null,
    scale: options.scale ? (parseScale(options.scale) ?? null) : null,
    position: options.position ? (parsePosition(options.position) ?? null) : null,
    roi: options.roi ? (parseRoi(options.roi) ?? null) : null,
  };
}

/** True when the cut-out needs more than a change of encoding or a background colour. */
export function reshapes(plan: CutoutPlan): boolean {
  return (
    plan.crop ||
    plan.scale !== null ||
    plan.position !== null ||
    plan.roi !== null ||
    plan.channels === 'alpha' ||
    plan.backgroundImage !== null ||
    plan.format === 'zip'
  );
}

export async function finishCutout(png: Buffer, plan: CutoutPlan, maxPixels: number): Promise<FinishedCutout> {
  let image = await decodeRgba(png, maxPixels);
  if (plan.roi) image = keepRoi(image, plan.roi);
  if (plan.scale !== null || plan.position !== null) image = await placeSubject(image, plan.scale, plan.position ?? { x: 0.5, y: 0.5 });
  if (plan.crop) image = await cropToSubject(image, plan.cropMargin);
  const raw = { raw: { width: image.width, height: image.height, channels: 4 as const } };

  if (plan.channels === 'alpha') {
    const matte = sharp(image.data, raw).extractChannel(3).toColourspace('b-w');
    const data = await (
      plan.format === 'jpeg' ? matte.jpeg({ quality: JPEG_QUALITY }) : plan.format === 'webp' ? matte.webp({ lossless: true }) : matte.png()
    ).toBuffer();
    return { data, width: image.width, height: image.height };
  }

  let composed: Buffer = image.data;
  let opaque = false;
  if (plan.backgroundImage) {
    const behind = await sharp(plan.backgroundImage, { limitInputPixels: maxPixels, failOn: 'truncated' })
      .autoOrient()
      .resize(image.width, image.height, { fit: 'cover', position: 'centre' })
      .ensureAlpha()
      .composite([{ input: image.data, ...raw }])
      .raw()
      .toBuffer();
    composed = behind;
    opaque = true;
  } else if (plan.background) {
    const colour = parseColour(plan.background);
    composed = await sharp({ create: { width: image.width, height: image.height, channels: 4, background: colour } })
      .composite([{ input: image.data, ...raw }])
      .raw()
      .toBuffer();
    opaque = colour.alpha === 1;
  }
  const out = sharp(composed, raw);
  switch (plan.format) {
    case 'zip': {
      const [color, alpha] = await Promise.all([
        sharp(composed, raw).removeAlpha().jpeg({ quality: JPEG_QUALITY }).toBuffer(),
        sharp(composed, raw).extractChannel(3).toColourspace('b-w').png().toBuffer(),
      ]);
      return {
        data: zipStored([
          { name: 'color.jpg', data: color },
          { name: 'alpha.png', data: alpha },
        ]),
        width: image.width,
        height: image.height,
      };
    }
    case 'jpeg':
      return { data: await out.flatten({ background: '#ffffff' }).jpeg({ quality: JPEG_QUALITY }).toBuffer(), width: image.width, height: image.height };
    case 'webp':
      return { data: await out.webp({ quality: WEBP_QUALITY, alphaQuality: 100 }).toBuffer(), width: image.width, height: image.height };
    case 'png':
      return { data: await (opaque ? out.removeAlpha() : out).png({ compressionLevel: 6 }).toBuffer(), width: image.width, height: image.height };
  }
}

interface RgbaImage {
  data: Buffer;
  width: number;
  height: number;
}

interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

async function decodeRgba(png: Buffer, maxPixels: number): Promise<RgbaImage> {
  const { data, info } = await sharp(png, { limitInputPixels: maxPixels, failOn: 'truncated' }).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** Everything outside the region loses its alpha. */
function keepRoi(image: RgbaImage, roi: NonNullable<CutoutPlan['roi']>): RgbaImage {
  const rect = roiRect(roi, image.width, image.height);
  if (rect === 'outside') throw new AppError('BAD_REQUEST', `roi exceeds the image bounds (${image.width}×${image.height})`);
  if (rect === 'empty') throw new AppError('BAD_REQUEST', 'roi defines an empty region');
  const { data, width, height } = image;
  for (let y = 0; y < height; y++) {
    const inside = y >= rect.top && y < rect.bottom;
    for (let x = 0; x < width; x++) {
      if (!inside || x < rect.left || x >= rect.right) data[(y * width + x) * 4 + 3] = 0;
    }
  }
  return image;
}

/** The bounding box of the pixels that are not (almost) transparent; null when there are none. */
export function subjectBox(data: Buffer, width: number, height: number): Box | null {
  let top = -1;
  let bottom = -1;
  let left = width;
  let right = -1;
  for (let y = 0; y < height; y++) {
    const row = y * width * 4;
    let first = -1;
    let last = -1;
    for (let x = 0; x < width; x++) {
      if ((data[row + x * 4 + 3] as number) > EMPTY_ALPHA) {
        if (first < 0) first = x;
        last = x;
      }
    }
    if (first < 0) continue;
    if (top < 0) top = y;
    bottom = y;
    if (first < left) left = first;
    if (last > right) right = last;
  }
  return top < 0 ? null : { left, top, width: right - left + 1, height: bottom - top + 1 };
}

function requireSubject(image: RgbaImage): Box {
  const box = subjectBox(image.data, image.width, image.height);
  if (!box) throw new AppError('NO_FOREGROUND', 'could not identify a foreground in the image');
  return box;
}

/** The subject moved (and scaled to `scale` of the canvas) on a transparent canvas of the same size. */
async function placeSubject(image: RgbaImage, scale: number | null, position: Position): Promise<RgbaImage> {
  const box = requireSubject(image);
  const raw = { raw: { width: image.width, height: image.height, channels: 4 as const } };
  let subject = sharp(image.data, raw).extract(box);
  let size = { width: box.width, height: box.height };
  if (scale !== null) {
    const fit = Math.min((image.width * scale) / box.width, (image.height * scale) / box.height);
    size = { width: Math.max(1, Math.round(box.width * fit)), height: Math.max(1, Math.round(box.height * fit)) };
    subject = sharp(await subject.raw().toBuffer(), { raw: { width: box.width, height: box.height, channels: 4 } }).resize(size.width, size.height, {
      fit: 'fill',
    });
  }
  const pixels = await subject.raw().toBuffer();
  const left = Math.round((image.width - size.width) * position.x);
  const top = Math.round((image.height - size.height) * position.y);
  const data = await sharp({ create: { width: image.width, height: image.height, channels: 4, background: TRANSPARENT } })
    .composite([{ input: pixels, raw: { ...size, channels: 4 }, left, top }])
    .raw()
    .toBuffer();
  return { data, width: image.width, height: image.height };
}

/** The subject's box plus the margin; margin beyond the image is transparent. */
async function cropToSubject(image: RgbaImage, margin: Margin | null): Promise<RgbaImage> {
  const box = requireSubject(image);
  const side = (i: number, reference: number) =>
    margin ? Math.min(resolveLength(margin[i] as Margin[number], reference), Math.round(reference / 2), MAX_MARGIN_PX) : 0;
  const [top, right, bottom, left] = [side(0, box.height), side(1, box.width), side(2, box.height), side(3, box.width)];
  const region = { left: box.left - left, top: box.top - top, right: box.left + box.width + right, bottom: box.top + box.height + bottom };
  const inside = {
    left: Math.max(0, region.left),
    top: Math.max(0, region.top),
    width: Math.min(image.width, region.right) - Math.max(0, region.left),
    height: Math.min(image.height, region.bottom) - Math.max(0, region.top),
  };
  const data = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 4 } })
    .extract(inside)
    .extend({
      top: inside.top - region.top,
      left: inside.left - region.left,
      bottom: region.bottom - (inside.top + inside.height),
      right: region.right - (inside.left + inside.width),
      background: TRANSPARENT,
    })
    .raw()
    .toBuffer();
  return { data, width: region.right - region.left, height: region.bottom - region.top };
}

export function parseColour(hex: string): { r: number; g: number; b: number; alpha: number } {
  const v = (i: number) => parseInt(hex.slice(1 + 2 * i, 3 + 2 * i), 16);
  return { r: v(0), g: v(1), b: v(2), alpha: hex.length === 9 ? v(3) / 255 : 1 };
}
