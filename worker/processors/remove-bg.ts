import sharp from 'sharp';
import { AppError } from '../../jobs/errors.js';
import { runSharp } from '../../platform/images.js';
import type { Processor } from '../context.js';
import type { RembgClient } from '../rembg/types.js';

/**
 * The background-removal queue: the source goes to the rembg pool as it came
 * (the service applies EXIF orientation), and the cut-out comes back as an
 * RGBA PNG of the upright image. It is stored as PNG or WebP with
 * transparency, or placed on `background` (#rrggbb, or #rrggbbaa to keep
 * some transparency); JPEG cannot be transparent, so a JPEG goes on the
 * chosen colour, white when none was chosen.
 */
export interface RemoveBgServices {
  /** the rembg pool; null fails every job with REMBG_UNAVAILABLE */
  rembg: RembgClient | null;
  /** model when a job names none */
  defaultModel: string;
}

const WEBP_QUALITY = 90;
const JPEG_QUALITY = 92;

export function createRemoveBgProcessor(services: RemoveBgServices): Processor<'remove-bg'> {
  return async (ctx) => {
    const { options } = ctx.payload;
    const format = options.format ?? 'png';
    const model = options.model ?? services.defaultModel;
    if (!services.rembg) throw new AppError('REMBG_UNAVAILABLE', 'this worker has no rembg instances configured (REMBG_URLS)');

    const { bytes, info } = await ctx.loadSource();
    await ctx.progress(10);
    const cutOut = await services.rembg.removeBackground(bytes, { model, signal: ctx.signal });
    await ctx.progress(80);
    ctx.signal.throwIfAborted();

    const background = options.background ?? (format === 'jpeg' ? '#ffffff' : null);
    const { data, info: out } = await encode(cutOut, format, background, info.width * info.height);
    const output = await ctx.store('cutout', data, { format, width: out.width, height: out.height });
    return {
      result: {
        success: true,
        photoUrl: output.url,
        width: output.width,
        height: output.height,
        format,
        model,
        background,
        outputs: [output],
        source: { format: info.format, width: info.width, height: info.height, bytes: info.bytes },
      },
      record: { processedPhotoUrl: output.url, width: output.width, height: output.height },
      recordFields: { 'removeBg.output': output, 'removeBg.model': model, 'removeBg.background': background },
    };
  };
}

/** `maxPixels`: the source's size; a cut-out is the same size, and it comes from another service, so it is decoded no larger. */
async function encode(png: Buffer, format: 'png' | 'webp' | 'jpeg', background: string | null, maxPixels: number) {
  return runSharp(async () => {
    // the header alone first, so that an oversized answer is named as such
    const meta = await sharp(png, { limitInputPixels: false })
      .metadata()
      .catch((error: unknown) => {
        throw new AppError('REMBG_FAILED', 'background removal returned something that is not an image', { cause: error });
      });
    if (meta.format !== 'png' || !meta.width || !meta.height) throw new AppError('REMBG_FAILED', 'background removal did not return a PNG');
    if (meta.width * meta.height > maxPixels) {
      throw new AppError('REMBG_FAILED', `background removal returned a ${meta.width}×${meta.height} image, larger than its source`);
    }
    // The service's PNG is the cut-out already: stored as it came, not decoded and encoded again.
    if (format === 'png' && !background) return { data: png, info: { width: meta.width, height: meta.height } };
    let image = sharp(png, { failOn: 'truncated', limitInputPixels: maxPixels });
    if (background) {
      const colour = parseColour(background);
      if (colour.alpha === 1 || format === 'jpeg') {
        image = image.flatten({ background: { r: colour.r, g: colour.g, b: colour.b } });
      } else {
        const canvas = sharp({ create: { width: meta.width, height: meta.height, channels: 4, background: colour } });
        image = sharp(
          await canvas
            .composite([{ input: png }])
            .png({ compressionLevel: 1 })
            .toBuffer(),
        );
      }
    }
    switch (format) {
      case 'png':
        return image.png({ compressionLevel: 6 }).toBuffer({ resolveWithObject: true });
      case 'webp':
        return image.webp({ quality: WEBP_QUALITY, alphaQuality: 100 }).toBuffer({ resolveWithObject: true });
      case 'jpeg':
        return image.jpeg({ quality: JPEG_QUALITY }).toBuffer({ resolveWithObject: true });
    }
  });
}

function parseColour(hex: string): { r: number; g: number; b: number; alpha: number } {
  const v = (i: number) => parseInt(hex.slice(1 + 2 * i, 3 + 2 * i), 16);
  return { r: v(0), g: v(1), b: v(2), alpha: hex.length === 9 ? v(3) / 255 : 1 };
}
