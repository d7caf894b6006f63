import sharp, { type Sharp } from 'sharp';
import { openImage, runSharp } from '../../platform/images.js';

/**
 * Decoded pixels kept in memory between pipeline steps, so a chain of
 * operations decodes once and never re-encodes a lossy intermediate.
 * Everything is sRGB with orientation applied.
 */
export interface Pixels {
  data: Buffer;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

export async function decodePixels(bytes: Buffer, maxPixels: number): Promise<Pixels> {
  return runSharp(async () => {
    const { data, info } = await openImage(bytes, maxPixels).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height, channels: info.channels };
  });
}

export function fromPixels(p: Pixels): Sharp {
  return sharp(p.data, { raw: { width: p.width, height: p.height, channels: p.channels } });
}

export async function toPixels(image: Sharp): Promise<Pixels> {
  return runSharp(async () => {
    const { data, info } = await image.raw().toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height, channels: info.channels };
  });
}

export type OutputFormat = 'jpeg' | 'png' | 'webp' | 'avif';

export async function encode(p: Pixels, format: OutputFormat, quality?: number): Promise<Buffer> {
  return runSharp(() => {
    const image = fromPixels(p);
    const q = quality === undefined ? {} : { quality };
    switch (format) {
      case 'jpeg':
        return image
          .flatten({ background: '#ffffff' })
          .jpeg({ mozjpeg: true, ...q })
          .toBuffer();
      case 'png':
        return image.png({ compressionLevel: 6 }).toBuffer();
      case 'webp':
        return image.webp(q).toBuffer();
      case 'avif':
        return image.avif({ effort: 2, ...q }).toBuffer();
    }
  });
}

/** The output format for a source format when no conversion was asked for. */
export function naturalFormat(input: string): OutputFormat {
  if (input === 'jpeg' || input === 'png' || input === 'webp' || input === 'avif') return input;
  if (input === 'heif') return 'jpeg';
  return 'png';
}
