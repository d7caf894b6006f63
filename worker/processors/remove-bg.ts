import sharp from 'sharp';
import { AppError } from '../../jobs/errors.js';
import { openImage, runSharp, type ImageInfo } from '../../platform/images.js';
import type { JobContext, Processor } from '../context.js';
import { cutoutPlan, finishCutout, JPEG_QUALITY, parseColour, reshapes, WEBP_QUALITY } from './cutout.js';
import type { RembgClient } from '../rembg/types.js';

/**
 * The background-removal queue: the source goes to the rembg pool as it came
 * (the service applies EXIF orientation; a photo above the job's `maxPixels`
 * is scaled down first), and the cut-out comes back as an RGBA PNG of the
 * upright image. It is stored as PNG or WebP with transparency, or placed on
 * `background` (#rrggbb, or #rrggbbaa to keep some transparency); JPEG cannot
 * be transparent, so a JPEG goes on the chosen colour, white when none was
 * chosen. Region of interest, crop, scale, position, the matte alone, a
 * background image and zip output are done by cutout.ts.
 */
export interface RemoveBgServices {
  /** the rembg pool; null fails every job with REMBG_UNAVAILABLE */
  rembg: RembgClient | null;
  /** model when a job names none */
  defaultModel: string;
}

export function createRemoveBgProcessor(services: RemoveBgServices): Processor<'remove-bg'> {
  return async (ctx) => {
    const { options } = ctx.payload;
    const model = options.model ?? services.defaultModel;
    if (!services.rembg) throw new AppError('REMBG_UNAVAILABLE', 'this worker has no rembg instances configured (REMBG_URLS)');

    const { bytes, info } = await ctx.loadSource();
    const behind = options.backgroundImageUrl ? await loadBackground(ctx, options.backgroundImageUrl) : null;
    const { photo, pixels } = await withinPixels(bytes, info, options.maxPixels);
    await ctx.progress(10);
    const cutOut = await services.rembg.removeBackground(photo, { model, signal: ctx.signal });
    await ctx.progress(80);
    ctx.signal.throwIfAborted();

    const plan = cutoutPlan(options, behind);
    const { data, info: out } = reshapes(plan)
      ? await runSharp(async () => {
          await checkCutOut(cutOut, pixels);
          const done = await finishCutout(cutOut, plan, pixels);
          return { data: done.data, info: { width: done.width, height: done.height } };
        })
      : await encode(cutOut, plan.format as 'png' | 'webp' | 'jpeg', plan.background, pixels);
    const format = plan.format;
    const output = await ctx.store('cutout', data, { format, width: out.width, height: out.height });
    return {
      result: {
        success: true,
        photoUrl: output.url,
        width: output.width,
        height: output.height,
        format,
        model,
        background: plan.background,
        ...(plan.channels === 'alpha' ? { channels: plan.channels } : {}),
        outputs: [output],
        source: { format: info.format, width: info.width, height: info.height, bytes: info.bytes },
      },
      record: { processedPhotoUrl: output.url, width: output.width, height: output.height },
      recordFields: { 'removeBg.output': output, 'removeBg.model': model, 'removeBg.background': plan.background },
    };
  };
}

/** The background image, fetched like a source; its failures name it. */
async function loadBackground(ctx: JobContext<'remove-bg'>, url: string): Promise<Buffer> {
  try {
    return (await ctx.loadUrl(url)).bytes;
  } catch (error) {
    if (error instanceof AppError) throw new AppError(error.code, `background image: ${error.message}`, { cause: error, retryable: error.retryable });
    throw error;
  }
}

/**
 * The photo scaled down (upright, as rembg would turn it) when it has more
 * pixels than the job allows (remove.bg's `size=preview`); otherwise the bytes
 * as they came. Returns the pixel count of what goes to rembg.
 */
async function withinPixels(bytes: Buffer, info: ImageInfo, maxPixels: number | undefined): Promise<{ photo: Buffer; pixels: number }> {
  const pixels = info.width * info.height;
  if (!maxPixels || pixels <= maxPixels) return { photo: bytes, pixels };
  const k = Math.sqrt(maxPixels / pixels);
  const turned = info.orientation >= 5;
  const width = Math.max(1, Math.floor((turned ? info.height : info.width) * k));
  const height = Math.max(1, Math.floor((turned ? info.width : info.height) * k));
  const image = openImage(bytes, pixels).resize(width, height, { fit: 'fill' });
  const photo = await runSharp(() => (info.hasAlpha ? image.png({ compressionLevel: 1 }) : image.jpeg({ quality: 95 })).toBuffer());
  return { photo, pixels: width * height };
}

/** rembg's answer must be a PNG no larger than what it was sent. */
async function checkCutOut(png: Buffer, maxPixels: number): Promise<{ width: number; height: number }> {
  const meta = await sharp(png, { limitInputPixels: false })
    .metadata()
    .catch((error: unknown) => {
      throw new AppError('REMBG_FAILED', 'background removal returned something that is not an image', { cause: error });
    });
  if (meta.format !== 'png' || !meta.width || !meta.height) throw new AppError('REMBG_FAILED', 'background removal did not return a PNG');
  if (meta.width * meta.height > maxPixels) {
    throw new AppError('REMBG_FAILED', `background removal returned a ${meta.width}×${meta.height} image, larger than its source`);
  }
  return { width: meta.width, height: meta.height };
}

/** `maxPixels`: the source's size; a cut-out is the same size, and it comes from another service, so it is decoded no larger. */
async function encode(png: Buffer, format: 'png' | 'webp' | 'jpeg', background: string | null, maxPixels: number) {
  return runSharp(async () => {
    const meta = await checkCutOut(png, maxPixels);
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
