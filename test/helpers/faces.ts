import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { createFaceEngine, type FaceEngine, type RgbImage } from '../../worker/faces/engine.js';
import { measureFace, type FaceMeasures } from '../../worker/faces/geometry.js';
import { preciseLandmarks } from '../../worker/faces/locate.js';

/**
 * Test photos with faces: the group photos face-api ships in its demo/
 * folder, and single-face portraits cut from them. Boxes were found once
 * with ssdMobilenetv1 on the full photos.
 */
const require = createRequire(import.meta.url);
const DEMO_DIR = join(dirname(require.resolve('@vladmandic/face-api/package.json')), 'demo');

export function demoPhotoPath(n: 1 | 2 | 3 | 4 | 5 | 6): string {
  return join(DEMO_DIR, `sample${n}.jpg`);
}

export interface DemoFace {
  sample: 1 | 2 | 3 | 4 | 5 | 6;
  box: { x: number; y: number; width: number; height: number };
}

/** Two different people, both facing the camera with the eyes nearly level. */
export const DEMO_FACES = {
  ann: { sample: 3, box: { x: 585, y: 329, width: 199, height: 271 } },
  bea: { sample: 6, box: { x: 1180, y: 305, width: 188, height: 280 } },
} as const satisfies Record<string, DemoFace>;

export interface PortraitOptions {
  /** crop width and height as multiples of the face box */
  widen?: number;
  heighten?: number;
  /** horizontal shift of the crop, in face-box widths */
  shift?: number;
  /** resize factor after cutting */
  scale?: number;
  /** degrees, clockwise, grey corners */
  rotate?: number;
  quality?: number;
}

/** A single-face portrait (JPEG) cut around one face of a demo photo. */
export async function portrait(face: DemoFace, options: PortraitOptions = {}): Promise<Buffer> {
  const { widen = 2.6, heighten = 3.0, shift = 0, scale = 1, rotate = 0, quality = 92 } = options;
  const file = demoPhotoPath(face.sample);
  const meta = await sharp(file).metadata();
  const b = face.box;
  const w = Math.round(b.width * widen);
  const h = Math.round(b.height * heighten);
  const left = Math.max(0, Math.round(b.x + b.width / 2 - w / 2 + shift * b.width));
  const top = Math.max(0, Math.round(b.y - (b.height * (heighten - 1)) / 2.2));
  let image = sharp(file).extract({ left, top, width: Math.min(w, (meta.width as number) - left), height: Math.min(h, (meta.height as number) - top) });
  if (scale !== 1) image = image.resize({ width: Math.round(w * scale) });
  let bytes = await image.jpeg({ quality }).toBuffer();
  if (rotate !== 0) bytes = await sharp(bytes).rotate(rotate, { background: '#808080' }).jpeg({ quality }).toBuffer();
  return bytes;
}

let checker: FaceEngine | undefined;

/**
 * Measures a finished crop afresh, with the other detector
 * (ssdMobilenetv1) than the worker's default, on the output image alone.
 * Landmarks are taken the detector-independent way (locate.ts), since a
 * single landmark pass moves the chin by a few % of the height with the
 * detector's box convention.
 */
export async function measureCrop(bytes: Buffer): Promise<{ faces: number; face: FaceMeasures | null }> {
  checker ??= createFaceEngine({ detector: 'ssdMobilenetv1', maxSide: 1024, minScore: 0.5, tinyInputSizes: [416] });
  const { data, info } = await sharp(bytes).flatten({ background: '#ffffff' }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const image: RgbImage = { data, width: info.width, height: info.height };
  const faces = await checker.detect(image);
  const best = faces[0];
  if (!best) return { faces: 0, face: null };
  return { faces: faces.length, face: measureFace(await preciseLandmarks(checker, image, best.box)) };
}
