/**
 * Pillow's `Image.resize(size, LANCZOS)` for one 8-bit channel, computed the
 * way Pillow computes it (libImaging/Resample.c): per-pixel Lanczos-3 taps
 * normalised to 1 and rounded to 22-bit fixed point, a horizontal pass
 * rounded and clipped to 8 bits, then a vertical pass. rembg scales its mask
 * back to the photo's size with exactly this call, so the cut-out's alpha
 * matches rembg's to the rounding; libvips' Lanczos-3 differs from it on
 * nearly every pixel and, on a 320-px mask, takes longer than these two
 * passes.
 */
const PRECISION_BITS = 22;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);
const MAX = 255 << PRECISION_BITS;
const SUPPORT = 3;

export function resizeChannelLanczos(src: Uint8Array, width: number, height: number, outWidth: number, outHeight: number): Buffer {
  if (src.length !== width * height) throw new Error(`expected ${width}×${height} values, got ${src.length}`);
  // plain Uint8Array views: Buffers and Uint8Arrays through the same loops would make them polymorphic
  const input = new Uint8Array(src.buffer, src.byteOffset, src.length);
  const wide = width === outWidth ? input : horizontal(input, width, height, outWidth);
  return height === outHeight ? Buffer.from(wide) : vertical(wide, outWidth, height, outHeight);
}

interface Taps {
  /**
   * `size` taps per output pixel: the input index of each (clamped to the
   * input) and its fixed-point weight. Taps past Pillow's own window weigh 0,
   * so every pixel has the same number of taps and the loops no bounds.
   */
  index: Int32Array;
  weights: Int32Array;
  size: number;
}

function taps(inSize: number, outSize: number): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(1, scale);
  const support = SUPPORT * filterScale;
  const size = Math.ceil(support) * 2 + 1;
  const index = new Int32Array(outSize * size);
  const weights = new Int32Array(outSize * size);
  const raw = new Float64Array(size);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const min = Math.max(0, Math.trunc(center - support + 0.5));
    const n = Math.min(inSize, Math.trunc(center + support + 0.5)) - min;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += raw[i] = lanczos((i + min - center + 0.5) / filterScale);
    for (let i = 0; i < size; i++) {
      index[o * size + i] = Math.min(inSize - 1, min + i);
      if (i >= n) continue;
      const w = sum !== 0 ? raw[i]! / sum : raw[i]!;
      weights[o * size + i] = Math.trunc(w < 0 ? -0.5 + w * ONE : 0.5 + w * ONE);
    }
  }
  return { index, weights, size };
}

function lanczos(x: number): number {
  return x >= -SUPPORT && x < SUPPORT ? sinc(x) * sinc(x / SUPPORT) : 0;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

function clip8(sum: number): number {
  return sum >= MAX ? 255 : sum <= 0 ? 0 : sum >> PRECISION_BITS;
}

// Enlarging (every mask of a photo larger than the model's side) has seven
// taps per pixel; those loops are written out, the rest take any count.

function horizontal(src: Uint8Array, width: number, height: number, outWidth: number): Uint8Array {
  const { index: at, weights: wt, size } = taps(width, outWidth);
  const out = new Uint8Array(outWidth * height);
  for (let y = 0; y < height; y++) {
    const row = y * width;
    const dst = y * outWidth;
    for (let o = 0, k = 0; o < outWidth; o++, k += size) {
      let sum: number;
      if (size === 7) {
        sum =
          (HALF +
            Math.imul(src[row + at[k]!]!, wt[k]!) +
            Math.imul(src[row + at[k + 1]!]!, wt[k + 1]!) +
            Math.imul(src[row + at[k + 2]!]!, wt[k + 2]!) +
            Math.imul(src[row + at[k + 3]!]!, wt[k + 3]!) +
            Math.imul(src[row + at[k + 4]!]!, wt[k + 4]!) +
            Math.imul(src[row + at[k + 5]!]!, wt[k + 5]!) +
            Math.imul(src[row + at[k + 6]!]!, wt[k + 6]!)) |
          0;
      } else {
        sum = HALF;
        for (let i = 0; i < size; i++) sum = (sum + Math.imul(src[row + at[k + i]!]!, wt[k + i]!)) | 0;
      }
      out[dst + o] = clip8(sum);
    }
  }
  return out;
}

function vertical(src: Uint8Array, width: number, height: number, outHeight: number): Buffer {
  const { index, weights, size } = taps(height, outHeight);
  const out = Buffer.allocUnsafe(width * outHeight);
  const acc = size === 7 ? null : new Int32Array(width);
  for (let o = 0, k = 0; o < outHeight; o++, k += size) {
    const dst = o * width;
    if (!acc) {
      const [r0, r1, r2, r3, r4, r5, r6] = [0, 1, 2, 3, 4, 5, 6].map((i) => index[k + i]! * width) as number[];
      const [w0, w1, w2, w3, w4, w5, w6] = [0, 1, 2, 3, 4, 5, 6].map((i) => weights[k + i]!) as number[];
      for (let x = 0; x < width; x++) {
        const sum =
          (HALF +
            Math.imul(src[r0! + x]!, w0!) +
            Math.imul(src[r1! + x]!, w1!) +
            Math.imul(src[r2! + x]!, w2!) +
            Math.imul(src[r3! + x]!, w3!) +
            Math.imul(src[r4! + x]!, w4!) +
            Math.imul(src[r5! + x]!, w5!) +
            Math.imul(src[r6! + x]!, w6!)) |
          0;
        out[dst + x] = clip8(sum);
      }
      continue;
    }
    acc.fill(HALF);
    for (let i = 0; i < size; i++) {
      const w = weights[k + i]!;
      const row = index[k + i]! * width;
      for (let x = 0; x < width; x++) acc[x] = (acc[x]! + Math.imul(src[row + x]!, w)) | 0;
    }
    for (let x = 0; x < width; x++) out[dst + x] = clip8(acc[x]!);
  }
  return out;
}
