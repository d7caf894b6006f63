/**
 * rembg's post_process (`ppm`): a morphological opening with OpenCV's 3×3
 * elliptical element (a cross), a 5×5 Gaussian blur with sigma 2 (borders
 * reflected as OpenCV's BORDER_REFLECT_101), then a threshold at 127, for
 * smooth hard edges without specks.
 */
export function postProcessMask(mask: Buffer, width: number, height: number): Buffer {
  const opened = crossFilter(crossFilter(mask, width, height, Math.min), width, height, Math.max);
  const blurred = gaussian5(opened, width, height);
  const out = Buffer.allocUnsafe(width * height);
  for (let i = 0; i < out.length; i++) out[i] = blurred[i]! < 127 ? 0 : 255;
  return out;
}

/** Min (erosion) or max (dilation) over the pixel and its four neighbours; outside the image does not count. */
function crossFilter(src: Uint8Array, width: number, height: number, pick: (a: number, b: number) => number): Buffer {
  const out = Buffer.allocUnsafe(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      let v = src[i]!;
      if (x > 0) v = pick(v, src[i - 1]!);
      if (x < width - 1) v = pick(v, src[i + 1]!);
      if (y > 0) v = pick(v, src[i - width]!);
      if (y < height - 1) v = pick(v, src[i + width]!);
      out[i] = v;
    }
  }
  return out;
}

const SIGMA = 2;
const WEIGHTS = (() => {
  const w = [-2, -1, 0, 1, 2].map((x) => Math.exp(-(x * x) / (2 * SIGMA * SIGMA)));
  const sum = w.reduce((a, b) => a + b, 0);
  return w.map((v) => v / sum);
})();

function reflect101(i: number, n: number): number {
  if (n === 1) return 0;
  if (i < 0) return -i;
  if (i >= n) return 2 * n - i - 2;
  return i;
}

/** Separable 5×5 Gaussian, rounded to 8 bits after each pass as OpenCV does on uint8 images. */
function gaussian5(src: Uint8Array, width: number, height: number): Uint8Array {
  const tmp = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let acc = 0;
      for (let k = -2; k <= 2; k++) acc += WEIGHTS[k + 2]! * src[y * width + reflect101(x + k, width)]!;
      tmp[y * width + x] = Math.round(acc);
    }
  }
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let acc = 0;
      for (let k = -2; k <= 2; k++) acc += WEIGHTS[k + 2]! * tmp[reflect101(y + k, height) * width + x]!;
      out[y * width + x] = Math.round(acc);
    }
  }
  return out;
}
