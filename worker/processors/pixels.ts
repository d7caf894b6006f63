import sharp, { type Sharp } from 'sharp';
import type { OutputFormat } from '../../jobs/operations.js';
import { openImage, runSharp, timeLimited, type ImageInfo } from '../../platform/images.js';

/**
 * The image a pipeline step reads, and how images are written.
 *
 * A frame is either the source file, still encoded (nothing has changed its
 * pixels yet), or decoded pixels kept in memory. Reading the encoded source
 * lets libvips stream it and shrink JPEG/WebP while decoding, which is what a
 * single-operation job wants; pixels let a chain of operations decode once and
 * never re-encode a lossy intermediate. Either way every read is sRGB with
 * EXIF orientation applied: embedded ICC profiles (Display P3, Adobe RGB,
 * CMYK, …) are converted to sRGB and greyscale becomes RGB, so every step and
 * every output sees the same colours.
 */
export interface Pixels {
  data: Buffer;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

export type Frame =
  | {
      kind: 'encoded';
      bytes: Buffer;
      /** its `srgbProfile`: converting from an sRGB profile would change nothing (and costs more than the decode) */
      info: ImageInfo;
    }
  | { kind: 'pixels'; pixels: Pixels };

/** A sharp pipeline reading the frame: oriented, sRGB. */
export function openFrame(frame: Frame): Sharp {
  // The source was checked against the configured pixel limit when it was
  // loaded; its own size is the limit now, in case the bytes lie.
  if (frame.kind === 'pixels') return fromPixels(frame.pixels);
  return openImage(frame.bytes, frame.info.width * frame.info.height, { ignoreIcc: frame.info.srgbProfile }).toColourspace('srgb');
}

/** Width and height as the pipeline sees them (after EXIF orientation). */
export function frameHasAlpha(frame: Frame): boolean {
  return frame.kind === 'encoded' ? frame.info.hasAlpha : frame.pixels.channels === 2 || frame.pixels.channels === 4;
}

export function frameSize(frame: Frame): { width: number; height: number } {
  return frame.kind === 'pixels' ? { width: frame.pixels.width, height: frame.pixels.height } : uprightSize(frame.info);
}

/** A source's size as shown: orientations 5–8 swap width and height. */
export function uprightSize({ width, height, orientation }: ImageInfo): { width: number; height: number } {
  return orientation >= 5 ? { width: height, height: width } : { width, height };
}

export async function decodeFrame(frame: Frame): Promise<Frame> {
  return frame.kind === 'pixels' ? frame : { kind: 'pixels', pixels: await toPixels(openFrame(frame)) };
}

export function fromPixels(p: Pixels): Sharp {
  return timeLimited(sharp(p.data, { raw: { width: p.width, height: p.height, channels: p.channels } }));
}

export async function toPixels(image: Sharp): Promise<Pixels> {
  return runSharp(async () => {
    const { data, info } = await image.toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height, channels: info.channels };
  });
}

/** How an image output is written. Options left out take ENCODER_DEFAULTS. */
export interface Encoding {
  format: OutputFormat;
  quality?: number | undefined;
  lossless?: boolean | undefined;
  effort?: number | undefined;
}

/**
 * Chosen for throughput (bench/processing.ts measures them): plain
 * libjpeg-turbo with optimised Huffman tables instead of mozjpeg's trellis
 * quantisation (about 3 % smaller files for 2.5–7× the time), WebP effort 2
 * instead of 4 (about 6 % larger for half the time), AVIF effort 2 (effort 4
 * takes ten times longer on a 2.5 MP photo), PNG zlib level 3 instead of 6
 * (about 1 % larger for two thirds of the time). A request that wants smaller
 * files asks for `effort`.
 */
export const ENCODER_DEFAULTS = {
  jpeg: { quality: 80 },
  png: { compressionLevel: 3 },
  webp: { quality: 80, effort: 2 },
  avif: { quality: 50, effort: 2 },
} as const;

/**
 * Adds the encoder to a pipeline. Outputs carry no metadata (sharp's default):
 * no EXIF or GPS, no XMP/IPTC, no ICC profile, since the pixels are sRGB,
 * which is what an untagged image means. JPEG has no alpha: transparent
 * areas are flattened onto white.
 */
export function withEncoder(image: Sharp, e: Encoding): Sharp {
  switch (e.format) {
    case 'jpeg':
      return image.flatten({ background: '#ffffff' }).jpeg({ quality: e.quality ?? ENCODER_DEFAULTS.jpeg.quality, mozjpeg: false });
    case 'png':
      return image.png({ compressionLevel: e.effort ?? ENCODER_DEFAULTS.png.compressionLevel });
    case 'webp':
      return image.webp({
        quality: e.quality ?? ENCODER_DEFAULTS.webp.quality,
        effort: e.effort ?? ENCODER_DEFAULTS.webp.effort,
        ...(e.lossless ? { lossless: true } : {}),
      });
    case 'avif':
      return image.avif({
        quality: e.quality ?? ENCODER_DEFAULTS.avif.quality,
        effort: e.effort ?? ENCODER_DEFAULTS.avif.effort,
        ...(e.lossless ? { lossless: true } : {}),
      });
  }
}

export interface Encoded {
  data: Buffer;
  format: OutputFormat;
  width: number;
  height: number;
}

export async function encode(image: Sharp, e: Encoding): Promise<Encoded> {
  return runSharp(async () => {
    const { data, info } = await withEncoder(image, e).toBuffer({ resolveWithObject: true });
    return { data, format: e.format, width: info.width, height: info.height };
  });
}

/** The output format for a source format when no conversion was asked for. */
export function naturalFormat(input: string): OutputFormat {
  if (input === 'jpeg' || input === 'png' || input === 'webp' || input === 'avif') return input;
  if (input === 'heif') return 'jpeg';
  return 'png';
}
