import exifr from 'exifr';
import sharpPhash from 'sharp-phash';
import type { Pixels } from './pixels.js';

/**
 * Facts about an image for the `metadata` operation: what its EXIF says
 * (orientation, camera, date, whether it holds a location), the name of its
 * colour profile, its dominant colours and a perceptual hash. Pure functions
 * over bytes and small pixel buffers; the caller decodes.
 */
export interface ExifFacts {
  /** EXIF orientation 1–8 as recorded (outputs are always turned upright) */
  orientation: number;
  camera: { make: string | null; model: string | null; lens: string | null } | null;
  /** when the photo was taken, as the camera recorded it: local time, with the offset only when the camera wrote one */
  takenAt: string | null;
  /** the EXIF holds GPS coordinates (reported, never copied: outputs carry no EXIF) */
  hasGps: boolean;
}

export const NO_EXIF: ExifFacts = { orientation: 1, camera: null, takenAt: null, hasGps: false };

// sharp-phash is CommonJS (module.exports = phash) but types itself as an ES default export.
const phash = sharpPhash as unknown as typeof sharpPhash.default;

const EXIF_TAGS = ['Orientation', 'Make', 'Model', 'LensModel', 'DateTimeOriginal', 'CreateDate', 'OffsetTimeOriginal', 'GPSLatitude', 'GPSLongitude'];

/**
 * Reads the EXIF block sharp found in any container (JPEG, PNG, WebP, HEIF,
 * AVIF, TIFF). sharp hands it over as `Exif\0\0` + a TIFF structure, which
 * exifr parses as a TIFF file. Unreadable EXIF is reported as none.
 */
export async function readExif(exif: Buffer | undefined): Promise<ExifFacts> {
  if (!exif || exif.length < 14) return NO_EXIF;
  const tiff = exif.subarray(0, 6).toString('latin1') === 'Exif\0\0' ? exif.subarray(6) : exif;
  let tags: Record<string, unknown> | undefined;
  try {
    tags = (await exifr.parse(tiff, {
      tiff: true,
      exif: true,
      gps: true,
      ifd1: false,
      interop: false,
      xmp: false,
      icc: false,
      iptc: false,
      jfif: false,
      ihdr: false,
      reviveValues: false,
      translateValues: false,
      pick: EXIF_TAGS,
    })) as Record<string, unknown> | undefined;
  } catch {
    return NO_EXIF;
  }
  if (!tags) return NO_EXIF;
  const text = (key: string) => {
    const value = tags[key];
    return typeof value === 'string' && value.trim() !== '' ? value.replace(/\0+$/, '').trim() : null;
  };
  const orientation = Number(tags['Orientation']);
  const make = text('Make');
  const model = text('Model');
  const lens = text('LensModel');
  return {
    orientation: Number.isInteger(orientation) && orientation >= 1 && orientation <= 8 ? orientation : 1,
    camera: make || model || lens ? { make, model, lens } : null,
    takenAt: exifDate(text('DateTimeOriginal') ?? text('CreateDate'), text('OffsetTimeOriginal')),
    hasGps: tags['GPSLatitude'] !== undefined && tags['GPSLongitude'] !== undefined,
  };
}

/** `2017:10:31 20:16:18` (+ `+02:00`) → `2017-10-31T20:16:18+02:00`; the EXIF date has no zone of its own. */
function exifDate(value: string | null, offset: string | null): string | null {
  const m = value?.match(/^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})/);
  if (!m || m[1] === '0000') return null;
  const zone = offset && /^[+-]\d{2}:\d{2}$/.test(offset) ? offset : '';
  return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${zone}`;
}

export interface DominantColor {
  /** #rrggbb */
  color: string;
  /** share of the (opaque) image, 0–1 */
  share: number;
}

/**
 * The main colours of a small sRGB image (a 64 × 64 thumbnail is plenty):
 * k-means over the opaque pixels, seeded deterministically from the most
 * common coarse colours, so the same image always gives the same answer.
 */
export function dominantColors(p: Pixels, k: number): DominantColor[] {
  const points = opaqueRgb(p);
  if (points.length === 0) return [];
  let centres = seedCentres(points, k);
  const assignment = new Uint16Array(points.length / 3);
  for (let iteration = 0; iteration < 10; iteration++) {
    const sums = new Float64Array(centres.length * 4);
    for (let i = 0, n = 0; i < points.length; i += 3, n++) {
      let best = 0;
      let bestDistance = Infinity;
      for (let c = 0; c < centres.length; c++) {
        const centre = centres[c] as [number, number, number];
        const d = (points[i]! - centre[0]) ** 2 + (points[i + 1]! - centre[1]) ** 2 + (points[i + 2]! - centre[2]) ** 2;
        if (d < bestDistance) {
          bestDistance = d;
          best = c;
        }
      }
      assignment[n] = best;
      sums[best * 4] = sums[best * 4]! + points[i]!;
      sums[best * 4 + 1] = sums[best * 4 + 1]! + points[i + 1]!;
      sums[best * 4 + 2] = sums[best * 4 + 2]! + points[i + 2]!;
      sums[best * 4 + 3] = sums[best * 4 + 3]! + 1;
    }
    const next = centres.map((centre, c) => {
      const count = sums[c * 4 + 3]!;
      return count === 0 ? centre : ([sums[c * 4]! / count, sums[c * 4 + 1]! / count, sums[c * 4 + 2]! / count] as [number, number, number]);
    });
    const moved = next.some(
      (centre, c) => Math.abs(centre[0] - centres[c]![0]) + Math.abs(centre[1] - centres[c]![1]) + Math.abs(centre[2] - centres[c]![2]) > 0.5,
    );
    centres = next;
    if (!moved) break;
  }
  const counts = new Array<number>(centres.length).fill(0);
  for (const c of assignment) counts[c]! += 1;
  const total = assignment.length;
  return centres
    .map((centre, c) => ({ color: hex(centre), share: counts[c]! / total }))
    .filter((d) => d.share > 0)
    .sort((a, b) => b.share - a.share)
    .map((d) => ({ color: d.color, share: Math.round(d.share * 1000) / 1000 }));
}

function opaqueRgb(p: Pixels): Uint8Array {
  const { data, channels } = p;
  const hasAlpha = channels === 2 || channels === 4;
  const grey = channels < 3;
  const out = new Uint8Array((data.length / channels) * 3);
  let o = 0;
  for (let i = 0; i < data.length; i += channels) {
    if (hasAlpha && data[i + channels - 1]! < 128) continue;
    const r = data[i]!;
    out[o++] = r;
    out[o++] = grey ? r : data[i + 1]!;
    out[o++] = grey ? r : data[i + 2]!;
  }
  return out.subarray(0, o);
}

/** The most common colours on a 4-bit-per-channel grid, at least a grid step apart. */
function seedCentres(points: Uint8Array, k: number): [number, number, number][] {
  const bins = new Map<number, { n: number; r: number; g: number; b: number }>();
  for (let i = 0; i < points.length; i += 3) {
    const key = ((points[i]! >> 4) << 8) | ((points[i + 1]! >> 4) << 4) | (points[i + 2]! >> 4);
    const bin = bins.get(key) ?? { n: 0, r: 0, g: 0, b: 0 };
    bin.n++;
    bin.r += points[i]!;
    bin.g += points[i + 1]!;
    bin.b += points[i + 2]!;
    bins.set(key, bin);
  }
  const ranked = [...bins.entries()]
    .sort((a, b) => b[1].n - a[1].n || a[0] - b[0])
    .map(([, b]) => [b.r / b.n, b.g / b.n, b.b / b.n] as [number, number, number]);
  const centres: [number, number, number][] = [];
  for (const colour of ranked) {
    if (centres.length >= k) break;
    if (centres.every((c) => Math.abs(c[0] - colour[0]) + Math.abs(c[1] - colour[1]) + Math.abs(c[2] - colour[2]) > 24)) centres.push(colour);
  }
  return centres.length > 0 ? centres : ranked.slice(0, 1);
}

function hex(c: readonly number[]): string {
  return `#${c
    .map((v) =>
      Math.round(Math.max(0, Math.min(255, v)))
        .toString(16)
        .padStart(2, '0'),
    )
    .join('')}`;
}

/**
 * A 64-bit DCT perceptual hash (sharp-phash) as 16 hex digits. Two photos
 * whose hashes differ in at most ~10 bits (Hamming distance) are very likely
 * the same picture, whatever their size, format or compression.
 */
export async function perceptualHash(p: Pixels): Promise<string> {
  const bits = await phash(p.data, { raw: { width: p.width, height: p.height, channels: p.channels } });
  let out = '';
  for (let i = 0; i < bits.length; i += 4) out += parseInt(bits.slice(i, i + 4), 2).toString(16);
  return out;
}

/** Bits that differ between two perceptual hashes (0 = same picture, 64 = opposite). */
export function hashDistance(a: string, b: string): number {
  let distance = 0;
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    let x = parseInt(a[i] ?? '0', 16) ^ parseInt(b[i] ?? '0', 16);
    while (x) {
      distance += x & 1;
      x >>= 1;
    }
  }
  return distance;
}
