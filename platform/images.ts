import { AsyncLocalStorage } from 'node:async_hooks';
import sharp, { type Sharp, type Metadata } from 'sharp';
import { AppError } from '../jobs/errors.js';
import { isSrgbProfile } from './icc.js';

/**
 * Decoding images safely: only raster formats we mean to accept, a pixel
 * limit checked from the header before any pixels are decoded, and sharp's
 * errors turned into codes a vendor can act on. SVG is refused outright: it
 * can reference external files and URLs.
 */
export const INPUT_FORMATS = ['jpeg', 'png', 'webp', 'avif', 'heif', 'gif', 'tiff'] as const;
export type InputFormat = (typeof INPUT_FORMATS)[number];

export interface ImageInfo {
  format: InputFormat;
  width: number;
  height: number;
  /** EXIF orientation 1–8, 1 when absent */
  orientation: number;
  hasAlpha: boolean;
  bytes: number;
  /** the embedded colour profile is sRGB, so converting from it to sRGB can be skipped */
  srgbProfile: boolean;
  /** the raw EXIF and ICC blocks of the header, when present */
  header: Pick<Metadata, 'exif' | 'icc'>;
}

// sharp caches decoded tiles for repeated operations on the same input; a
// worker never reuses inputs, so the cache only costs memory.
sharp.cache(false);

export async function inspectImage(bytes: Buffer, maxPixels: number): Promise<ImageInfo> {
  refuseUnlessRaster(bytes);
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (error) {
    throw new AppError('BAD_IMAGE', 'the file is not an image sharp can read', { cause: error });
  }
  const format = meta.format === 'heif' ? (meta.compression === 'av1' ? 'avif' : 'heif') : meta.format;
  if (!format || !(INPUT_FORMATS as readonly string[]).includes(format)) {
    throw new AppError('UNSUPPORTED_FORMAT', `image format ${format ?? 'unknown'} is not accepted (jpeg, png, webp, avif, heic, gif, tiff)`);
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (width < 1 || height < 1) throw new AppError('BAD_IMAGE', 'the image has no dimensions');
  if (width * height > maxPixels) {
    throw new AppError('TOO_MANY_PIXELS', `the image is ${width}×${height} (${width * height} pixels); the limit is ${maxPixels}`);
  }
  return {
    format: format as InputFormat,
    width,
    height,
    orientation: meta.orientation ?? 1,
    hasAlpha: meta.hasAlpha ?? false,
    bytes: bytes.length,
    srgbProfile: isSrgbProfile(meta.icc),
    header: { exif: meta.exif, icc: meta.icc },
  };
}

/**
 * Only bytes that start like one of INPUT_FORMATS reach libvips, whose
 * loaders would otherwise also take SVG (librsvg, which follows references
 * to other files), gzipped SVG, PDF or whatever else the installed libvips
 * was built with. SVG and XML are named as such; other bytes are not an image.
 */
export function refuseUnlessRaster(bytes: Buffer): void {
  if (rasterMagic(bytes)) return;
  const head = bytes.subarray(0, 4096).toString('latin1');
  if (/<svg[\s>]|<!DOCTYPE\s+svg|^\s*(\uFEFF|\xEF\xBB\xBF)?\s*<\?xml/i.test(head) || (bytes[0] === 0x1f && bytes[1] === 0x8b)) {
    throw new AppError('UNSUPPORTED_FORMAT', 'SVG, XML and compressed files are not accepted: send a raster image (jpeg, png, webp, avif, heic, gif, tiff)');
  }
  throw new AppError('BAD_IMAGE', 'the file is not an image (its first bytes are not those of jpeg, png, webp, avif, heic, gif or tiff)');
}

function rasterMagic(b: Buffer): boolean {
  const ascii = (start: number, text: string) => b.subarray(start, start + text.length).toString('latin1') === text;
  return (
    (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) || // jpeg
    ascii(0, '\x89PNG\r\n\x1a\n') ||
    (ascii(0, 'RIFF') && ascii(8, 'WEBP')) ||
    ascii(0, 'GIF87a') ||
    ascii(0, 'GIF89a') ||
    ascii(0, 'II*\0') || // tiff, little-endian
    ascii(0, 'MM\0*') || // tiff, big-endian
    ascii(4, 'ftyp') // heif / avif (ISO base media); sharp names the brand
  );
}

/**
 * A sharp pipeline over the bytes, EXIF orientation already applied, that
 * refuses truncated or corrupt data instead of producing half an image.
 * `ignoreIcc` skips converting from an embedded profile, for callers that
 * know the profile is sRGB already.
 */
export function openImage(bytes: Buffer, maxPixels: number, options: { ignoreIcc?: boolean } = {}): Sharp {
  return timeLimited(
    sharp(bytes, {
      limitInputPixels: maxPixels,
      failOn: 'truncated',
      sequentialRead: true,
      ...(options.ignoreIcc ? { ignoreIcc: true } : {}),
    }).autoOrient(),
  );
}

/**
 * The end of the job attempt the current code runs for (the worker's runner
 * sets it around each attempt). libvips cannot be aborted from JavaScript,
 * but it stops computing a pipeline's pixels once sharp's `timeout` has
 * passed, so an attempt that timed out does not keep a core busy: its slot is
 * free when its work has stopped, soon after the deadline. Encoders that work
 * on the whole image at once (AVIF, PNG's zlib) finish what they started.
 */
export const attemptDeadline = new AsyncLocalStorage<{ endsAt: number }>();

/** The pipeline, stopped by libvips at the current attempt's deadline (whole seconds, at least one). */
export function timeLimited(image: Sharp): Sharp {
  const endsAt = attemptDeadline.getStore()?.endsAt;
  if (endsAt === undefined) return image;
  return image.timeout({ seconds: Math.min(3600, Math.max(1, Math.ceil((endsAt - Date.now()) / 1000))) });
}

/** Runs a sharp step and turns its failures into job error codes. */
export async function runSharp<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    throw sharpError(error);
  }
}

export function sharpError(error: unknown): unknown {
  if (error instanceof AppError) return error;
  const message = (error as Error)?.message ?? String(error);
  if (/^timeout: \d+% complete/.test(message)) return new AppError('JOB_TIMEOUT', 'the image work was stopped at the attempt deadline', { cause: error });
  if (/pixel limit/i.test(message)) return new AppError('TOO_MANY_PIXELS', 'the image exceeds the pixel limit', { cause: error });
  if (/unsupported image format|Input buffer contains unsupported/i.test(message))
    return new AppError('UNSUPPORTED_FORMAT', 'the image format is not supported', { cause: error });
  if (/VipsJpeg|VipsPng|VipsWebp|VipsHeif|VipsTiff|VipsGif|premature end|truncated|corrupt|Invalid|bad seek|read error|Not a JPEG|decode/i.test(message)) {
    return new AppError('BAD_IMAGE', `the image could not be decoded: ${message.split('\n')[0]?.slice(0, 200)}`, { cause: error });
  }
  return error;
}
