import { CROWN_FROM_EYES, type FacePreset } from '../../jobs/face-presets.js';
import type { Point } from './engine.js';

/**
 * Measurements on 68-point landmarks (iBUG 300-W order) and the similarity
 * transform (rotation, uniform scale, translation) that places a face as a
 * preset asks. Pure functions: no images, no I/O.
 */
export interface FaceMeasures {
  /** eye centres, the one on the image's left first */
  eyes: [Point, Point];
  eyeMid: Point;
  chin: Point;
  /** estimated top of the skull (see CROWN_FROM_EYES) */
  crown: Point;
  /** angle of the eye line against the horizontal, degrees; positive when the image-right eye is lower */
  tiltDeg: number;
  /** chin to crown, pixels */
  headHeight: number;
  /** jaw outline width (landmarks 0 and 16), pixels */
  faceWidth: number;
  /** the face's vertical centre line crosses the eye line here */
  centre: Point;
}

const JAW_LEFT = 0;
const CHIN = 8;
const JAW_RIGHT = 16;
const EYE_A = [36, 37, 38, 39, 40, 41];
const EYE_B = [42, 43, 44, 45, 46, 47];

export function measureFace(landmarks: readonly Point[]): FaceMeasures {
  if (landmarks.length !== 68) throw new Error(`expected 68 landmarks, got ${landmarks.length}`);
  const at = (i: number) => landmarks[i] as Point;
  const eyeA = mean(EYE_A.map(at));
  const eyeB = mean(EYE_B.map(at));
  const eyeMid = mean([eyeA, eyeB]);
  const angle = Math.atan2(eyeB.y - eyeA.y, eyeB.x - eyeA.x);
  const across = { x: Math.cos(angle), y: Math.sin(angle) };
  const down = { x: -Math.sin(angle), y: Math.cos(angle) };
  const chin = at(CHIN);
  const eyesToChin = dot(sub(chin, eyeMid), down);
  const crown = add(eyeMid, scale(down, -eyesToChin * CROWN_FROM_EYES));
  const jawMid = mean([at(JAW_LEFT), at(JAW_RIGHT)]);
  const centre = add(eyeMid, scale(across, dot(sub(jawMid, eyeMid), across)));
  return {
    eyes: [eyeA, eyeB],
    eyeMid,
    chin,
    crown,
    tiltDeg: (angle * 180) / Math.PI,
    headHeight: eyesToChin * (1 + CROWN_FROM_EYES),
    faceWidth: Math.hypot(at(JAW_RIGHT).x - at(JAW_LEFT).x, at(JAW_RIGHT).y - at(JAW_LEFT).y),
    centre,
  };
}

/**
 * Maps source pixels to output pixels: rotate by -angle about `anchor`,
 * scale, and move `anchor` to `target`.
 */
export interface Placement {
  scale: number;
  /** radians; the eye line's angle in the source */
  angle: number;
  anchor: Point;
  target: Point;
  width: number;
  height: number;
}

/** Levels the eye line, scales the head to the preset's target ratio, and puts the crown and face centre where the preset wants them. */
export function placeFace(face: FaceMeasures, preset: FacePreset): Placement {
  const angle = (face.tiltDeg * Math.PI) / 180;
  const down = { x: -Math.sin(angle), y: Math.cos(angle) };
  // the point on the face's centre line at crown height
  const anchor = add(face.centre, scale(down, -dot(sub(face.eyeMid, face.crown), down)));
  return {
    scale: (preset.headRatio.target * preset.height) / face.headHeight,
    angle,
    anchor,
    target: { x: preset.width / 2, y: preset.crownMargin * preset.height },
    width: preset.width,
    height: preset.height,
  };
}

export function toOutput(pl: Placement, p: Point): Point {
  const c = Math.cos(pl.angle);
  const s = Math.sin(pl.angle);
  const dx = p.x - pl.anchor.x;
  const dy = p.y - pl.anchor.y;
  return { x: pl.target.x + pl.scale * (c * dx + s * dy), y: pl.target.y + pl.scale * (-s * dx + c * dy) };
}

export function toSource(pl: Placement, q: Point): Point {
  const c = Math.cos(pl.angle);
  const s = Math.sin(pl.angle);
  const u = (q.x - pl.target.x) / pl.scale;
  const v = (q.y - pl.target.y) / pl.scale;
  return { x: pl.anchor.x + c * u - s * v, y: pl.anchor.y + s * u + c * v };
}

/** What a studio checks on the finished photo, measured from landmarks found on the output image. */
export interface CropChecks {
  headRatio: { value: number; min: number; max: number; pass: boolean };
  eyeTilt: { before: number; after: number; max: number; pass: boolean };
  horizontalOffset: { value: number; max: number; pass: boolean };
  crownMargin: { value: number };
  eyeLineFromBottom: { value: number; min: number | null; pass: boolean };
  pass: boolean;
}

export function checkCrop(before: FaceMeasures, after: FaceMeasures, preset: FacePreset): CropChecks {
  const headRatio = after.headHeight / preset.height;
  const offset = (after.centre.x - preset.width / 2) / preset.width;
  const eyeLine = (preset.height - after.eyeMid.y) / preset.height;
  const checks = {
    headRatio: {
      value: round(headRatio),
      min: preset.headRatio.min,
      max: preset.headRatio.max,
      pass: headRatio >= preset.headRatio.min && headRatio <= preset.headRatio.max,
    },
    eyeTilt: {
      before: round(before.tiltDeg, 2),
      after: round(after.tiltDeg, 2),
      max: preset.maxEyeTiltDeg,
      pass: Math.abs(after.tiltDeg) <= preset.maxEyeTiltDeg,
    },
    horizontalOffset: { value: round(offset), max: preset.maxCentreOffset, pass: Math.abs(offset) <= preset.maxCentreOffset },
    crownMargin: { value: round(after.crown.y / preset.height) },
    eyeLineFromBottom: {
      value: round(eyeLine),
      min: preset.minEyeLineFromBottom === null ? null : round(preset.minEyeLineFromBottom),
      pass: preset.minEyeLineFromBottom === null || eyeLine >= preset.minEyeLineFromBottom,
    },
  };
  return { ...checks, pass: checks.headRatio.pass && checks.eyeTilt.pass && checks.horizontalOffset.pass && checks.eyeLineFromBottom.pass };
}

export function round(value: number, digits = 3): number {
  const k = 10 ** digits;
  return Math.round(value * k) / k;
}

function mean(points: Point[]): Point {
  const n = points.length;
  return { x: points.reduce((s, p) => s + p.x, 0) / n, y: points.reduce((s, p) => s + p.y, 0) / n };
}
function add(a: Point, b: Point): Point {
  return { x: a.x + b.x, y: a.y + b.y };
}
function sub(a: Point, b: Point): Point {
  return { x: a.x - b.x, y: a.y - b.y };
}
function scale(a: Point, k: number): Point {
  return { x: a.x * k, y: a.y * k };
}
function dot(a: Point, b: Point): number {
  return a.x * b.x + a.y * b.y;
}
