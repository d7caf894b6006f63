import type { Box, FaceEngine, Point, RgbImage } from './engine.js';
import { measureFace } from './geometry.js';

/**
 * Landmarks good enough to level eyes to a fraction of a degree and to
 * measure the head the same way whichever detector found it. The landmark
 * net regresses relative to the box it is given and toward an upright face,
 * so a first look (in the detector's box) only serves to frame a second:
 * a box of our own around the first landmarks, with the face turned upright.
 * The second look no longer depends on the detector's box convention (tiny
 * and ssd boxes differ by 10–20 %) and no longer under-reads tilt.
 */
export async function preciseLandmarks(engine: FaceEngine, image: RgbImage, box: Box, signal?: AbortSignal): Promise<Point[]> {
  const first = await engine.landmarks(image, box, { signal });
  const angle = (measureFace(first).tiltDeg * Math.PI) / 180;
  return engine.landmarks(image, boxAround(first, angle), { angle, signal });
}

/**
 * Landmarks' extent measured with the face upright, grown to the framing
 * tinyFaceDetector gives a face (1.27 × the larger extent, measured on the
 * face-api sample photos), centred on them; returned as the axis-aligned
 * square the engine turns by `angle` about its centre.
 */
const BOX_PER_EXTENT = 1.27;

export function boxAround(landmarks: Point[], angle: number): Box {
  const c = Math.cos(-angle);
  const s = Math.sin(-angle);
  const upright = landmarks.map((p) => ({ x: c * p.x - s * p.y, y: s * p.x + c * p.y }));
  const xs = upright.map((p) => p.x);
  const ys = upright.map((p) => p.y);
  const minX = Math.min(...xs);
  const minY = Math.min(...ys);
  const maxX = Math.max(...xs);
  const maxY = Math.max(...ys);
  const side = Math.max(maxX - minX, maxY - minY) * BOX_PER_EXTENT;
  const cu = (minX + maxX) / 2;
  const cv = (minY + maxY) / 2;
  // back from the upright frame
  const centre = { x: Math.cos(angle) * cu - Math.sin(angle) * cv, y: Math.sin(angle) * cu + Math.cos(angle) * cv };
  return { x: centre.x - side / 2, y: centre.y - side / 2, width: side, height: side };
}
