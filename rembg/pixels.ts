import sharp from 'sharp';
import { AppError } from '../jobs/errors.js';
import { inspectImage, openImage, runSharp } from '../platform/images.js';
import { RembgError } from './errors.js';
import { resizeChannelLanczos } from './pil-resize.js';
import { postProcessMask } from './post-process.js';

/**
 * The per-pixel half of rembg's `remove()`, in two steps around the model:
 * `prepare` decodes the photo and makes the model's input tensor, `finish`
 * turns the model's output into the mask at the photo's size and encodes the
 * PNG. Both work on whole photos (up to MAX_INPUT_PIXELS), so they run on the
 * pixel threads (pixel-thread.ts), never on the HTTP event loop.
 */
export interface MaskOptions {
  onlyMask: boolean;
  postProcessMask: boolean;
  /** rembg's bgc: the cut-out is composited over this colour (r, g, b, a) */
  background: readonly [number, number, number, number] | null;
  pngCompression: number;
}

/** EXIF orientation applied, decoded (RembgError 400/413/415 for bad, huge or unknown images), the model's input made. */
export async function prepare(
  bytes: Uint8Array,
  maxPixels: number,
  side: number,
  mean: readonly number[],
  std: readonly number[],
): Promise<{ image: Decoded; input: Float32Array }> {
  const image = await decodeImage(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length), maxPixels);
  return { image, input: await modelInput(image, side, mean, std) };
}

/** Channel 0 of the model's output (side × side) → the mask at the photo's size → the PNG. */
export async function finish(image: Decoded, output: Float32Array, side: number, options: MaskOptions): Promise<Buffer> {
  let mask = resizeChannelLanczos(toMask(output), side, side, image.width, image.height);
  if (options.postProcessMask) mask = postProcessMask(mask, image.width, image.height);
  return encode(image, mask, options);
}

async function encode(image: Decoded, mask: Buffer, options: MaskOptions): Promise<Buffer> {
  const { width, height } = image;
  const png = { compressionLevel: options.pngCompression, adaptiveFiltering: false };
  if (options.onlyMask)
    return sharp(mask, { raw: { width, height, channels: 1 } })
      .toColourspace('b-w')
      .png(png)
      .toBuffer();
  // The photo's colours with the mask as alpha, without a JS RGBA copy: an
  // RGBA photo (decoded for this call alone) takes the masked alpha in
  // place; libvips joins the mask to an RGB one.
  if (image.channels === 4) maskAlphaInPlace(image, mask);
  const cut =
    image.channels === 4
      ? sharp(image.data, { raw: { width, height, channels: 4 } })
      : sharp(image.data, { raw: { width, height, channels: 3 } }).joinChannel(mask, { raw: { width, height, channels: 1 } });
  if (!options.background) return cut.png(png).toBuffer();
  const rgba = await cut.raw().toBuffer();
  composite(rgba, options.background);
  return sharp(rgba, { raw: { width, height, channels: 4 } })
    .png(png)
    .toBuffer();
}

export interface Decoded {
  data: Buffer;
  width: number;
  height: number;
  channels: 3 | 4;
}

/** Decoded upright as 8-bit sRGB; bad bytes are 400, too many pixels 413, formats we do not read 415. */
export async function decodeImage(bytes: Buffer, maxPixels: number): Promise<Decoded> {
  try {
    const { srgbProfile } = await inspectImage(bytes, maxPixels);
    // An sRGB profile is not converted from (as the worker does): the pixels
    // are sRGB already, and rembg itself never applies profiles at all.
    const { data, info } = await runSharp(() =>
      openImage(bytes, maxPixels, { ignoreIcc: srgbProfile }).toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true }),
    );
    if (info.channels === 3 || info.channels === 4) return { data, width: info.width, height: info.height, channels: info.channels };
    // grey (and grey + alpha) images: rembg converts them to RGB
    const rgb = await runSharp(() =>
      sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } })
        .toColourspace('srgb')
        .raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true }),
    );
    return { data: rgb.data, width: rgb.info.width, height: rgb.info.height, channels: rgb.info.channels === 4 ? 4 : 3 };
  } catch (error) {
    throw asRequestError(error);
  }
}

function asRequestError(error: unknown): unknown {
  if (!(error instanceof AppError)) return error;
  const status = error.code === 'TOO_MANY_PIXELS' ? 413 : error.code === 'UNSUPPORTED_FORMAT' ? 415 : 400;
  return new RembgError(status, error.message, { cause: error });
}

/** rembg's normalize(): RGB at side×side (Lanczos), / max, (x − mean) / std, channels first. */
export async function modelInput(image: Decoded, side: number, mean: readonly number[], std: readonly number[]): Promise<Float32Array> {
  // rembg drops alpha before it resizes (PIL's convert("RGB")); sharp would
  // resize RGBA premultiplied and darken transparent areas, so alpha goes first.
  const rgb = await sharp(image.channels === 4 ? rgbOf(image) : image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(side, side, { fit: 'fill', kernel: 'lanczos3' })
    .raw()
    .toBuffer();
  let max = 0;
  for (let i = 0; i < rgb.length; i++) if (rgb[i]! > max) max = rgb[i]!;
  const scale = max > 0 ? 1 / max : 1;
  const plane = side * side;
  const input = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const m = mean[c]!;
    const s = std[c]!;
    const offset = c * plane;
    for (let i = 0; i < plane; i++) input[offset + i] = (rgb[i * 3 + c]! * scale - m) / s;
  }
  return input;
}

function rgbOf(image: Decoded): Buffer {
  const pixels = image.width * image.height;
  const rgb = Buffer.allocUnsafe(pixels * 3);
  const src = image.data;
  for (let i = 0, s = 0, d = 0; i < pixels; i++, s += 4, d += 3) {
    rgb[d] = src[s]!;
    rgb[d + 1] = src[s + 1]!;
    rgb[d + 2] = src[s + 2]!;
  }
  return rgb;
}

/** Min-max scaled to 0–255 and truncated, as rembg's `(pred * 255).astype("uint8")`. */
function toMask(output: Float32Array): Buffer {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < output.length; i++) {
    const v = output[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const range = max - min;
  const mask = Buffer.allocUnsafe(output.length);
  for (let i = 0; i < output.length; i++) mask[i] = range > 0 ? Math.trunc(((output[i]! - min) / range) * 255) : 0;
  return mask;
}

/** The photo's alpha times the mask (as rembg's composite over a transparent image gives), in place. */
function maskAlphaInPlace(image: Decoded, mask: Buffer): void {
  const pixels = image.width * image.height;
  const data = image.data;
  // ((x + 127) * 257 + 257) >>> 16 is Math.round(x / 255) for every x in 0…255², without a division
  for (let i = 0, a = 3; i < pixels; i++, a += 4) data[a] = ((mask[i]! * data[a]! + 127) * 257 + 257) >>> 16;
}

/** rembg's apply_background_color: the cut-out alpha-composited over a background of colour (r, g, b, a), in place. */
function composite(rgba: Buffer, [r, g, b, a]: readonly [number, number, number, number]): void {
  const ba = a / 255;
  for (let d = 0; d < rgba.length; d += 4) {
    const fa = rgba[d + 3]! / 255;
    const oa = fa + ba * (1 - fa);
    if (oa === 0) {
      rgba[d] = rgba[d + 1] = rgba[d + 2] = rgba[d + 3] = 0;
      continue;
    }
    const k = (ba * (1 - fa)) / oa;
    const f = fa / oa;
    rgba[d] = Math.round(rgba[d]! * f + r * k);
    rgba[d + 1] = Math.round(rgba[d + 1]! * f + g * k);
    rgba[d + 2] = Math.round(rgba[d + 2]! * f + b * k);
    rgba[d + 3] = Math.round(oa * 255);
  }
}
