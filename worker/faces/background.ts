import sharp from 'sharp';
import { AppError } from '../../jobs/errors.js';
import { runSharp } from '../../platform/images.js';
import type { RembgClient } from '../rembg/types.js';
import type { RgbImage } from './engine.js';

/**
 * White and transparent backgrounds: the person is cut out of the finished
 * crop by background removal (the rembg pool), which is asked for the mask
 * only so the crop's own pixels are kept losslessly. Cutting the crop rather
 * than the source means rembg always sees an image of the preset's size.
 */
export interface CutOut {
  data: Buffer;
  width: number;
  height: number;
  channels: 3 | 4;
}

export async function replaceBackground(
  rembg: RembgClient | null,
  image: RgbImage,
  background: 'white' | 'transparent',
  options: { model: string | null; signal: AbortSignal },
): Promise<CutOut> {
  if (!rembg) {
    throw new AppError('REMBG_UNAVAILABLE', `background=${background} needs background removal, and this worker has no rembg client`);
  }
  const raw = { raw: { width: image.width, height: image.height, channels: 3 as const } };
  const input = await runSharp(() => sharp(image.data, raw).jpeg({ quality: 92 }).toBuffer());
  const maskPng = await rembg.removeBackground(input, { onlyMask: true, signal: options.signal, ...(options.model ? { model: options.model } : {}) });
  const mask = await maskOf(maskPng, image.width, image.height);
  const rgba = await runSharp(() =>
    sharp(image.data, raw)
      .joinChannel(mask, { raw: { width: image.width, height: image.height, channels: 1 } })
      .raw()
      .toBuffer(),
  );
  if (background === 'transparent') return { data: rgba, width: image.width, height: image.height, channels: 4 };
  // sharp flattens before it joins channels, so flattening takes a pass of its own
  const data = await runSharp(() =>
    sharp(rgba, { raw: { width: image.width, height: image.height, channels: 4 } })
      .flatten({ background: '#ffffff' })
      .raw()
      .toBuffer(),
  );
  return { data, width: image.width, height: image.height, channels: 3 };
}

/** The mask as one 8-bit channel of the crop's size: the image's alpha when it has one (a cut-out), else its grey levels. */
async function maskOf(png: Buffer, width: number, height: number): Promise<Buffer> {
  try {
    // The mask comes from another service: decoded no larger than the crop it is for.
    const decode = () => sharp(png, { limitInputPixels: width * height, failOn: 'truncated' });
    const meta = await decode().metadata();
    const source = meta.hasAlpha ? decode().extractChannel('alpha') : decode().greyscale();
    return await source.resize(width, height, { fit: 'fill' }).extractChannel(0).raw().toBuffer();
  } catch (error) {
    throw new AppError('REMBG_FAILED', 'background removal returned something that is not a mask image', { cause: error });
  }
}
