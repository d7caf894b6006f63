import type { Box, FaceEngine, Point, RgbImage } from './engine.js';
import { measureFace } from './geometry.js';

/**
 * Landmarks good enough to level eyes to a fraction of a degree. The
 * landmark net regresses toward an upright face, so on a tilted face it
 * under-reads the tilt (by about a tenth); a second look with the face
 * turned upright by the first reading removes most of that bias.
 */
const SECOND_LOOK_ABOVE_RAD = (0.5 * Math.PI) / 180;

export async function preciseLandmarks(engine: FaceEngine, image: RgbImage, box: Box, signal?: AbortSignal): Promise<Point[]> {
  const first = await engine.landmarks(image, box, { signal });
  const angle = (measureFace(first).tiltDeg * Math.PI) / 180;
  if (Math.abs(angle) < SECOND_LOOK_ABOVE_RAD) return first;
  return engine.landmarks(image, box, { angle, signal });
}
