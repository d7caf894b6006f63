/**
 * Photo standards for face crops, in one table. Geometry is expressed as
 * fractions of the output height/width so the same numbers drive placement
 * (worker) and the checks reported to the vendor. Pure data: no I/O.
 *
 * "Head" is chin to crown. Landmark models find the chin, eyes and brows but
 * not the top of the skull; the crown is estimated from the eye line, which
 * sits about halfway between chin and crown on an adult head (see
 * CROWN_FROM_EYES). Hair above the crown is not measured.
 */
import { Type } from '@sinclair/typebox';
import type { FieldProblem } from './errors.js';

export const FACE_CROP_MODES = ['passport', 'idcard'] as const;
export type FaceCropMode = (typeof FACE_CROP_MODES)[number];

export interface Range {
  min: number;
  max: number;
}

export interface FacePreset {
  mode: FaceCropMode;
  title: string;
  /** where the numbers come from */
  source: string;
  widthMm: number;
  heightMm: number;
  dpi: number;
  /** output size in pixels (mm / 25.4 × dpi, rounded) */
  width: number;
  height: number;
  /** head height (chin to crown) as a fraction of the photo height: the target the crop is scaled to, and the accepted range */
  headRatio: Range & { target: number };
  /** distance from the top edge to the crown, as a fraction of the photo height (target) */
  crownMargin: number;
  /** the eye line must be at least this fraction of the height above the bottom edge, when the standard says so */
  minEyeLineFromBottom: number | null;
  /** largest accepted eye-line tilt, degrees */
  maxEyeTiltDeg: number;
  /** largest accepted horizontal offset of the face centre from the photo centre, as a fraction of the width */
  maxCentreOffset: number;
}

/**
 * Eyes-to-crown distance as a multiple of eyes-to-chin distance. The
 * classic proportion puts the eye line halfway down the head (1.0); on the
 * face-api sample portraits that left the top of the hair touching the top
 * edge at the passport's 75 % head ratio, so the estimate is raised by 10 %
 * to leave room for hair. It is a population average, good to about ±10 % of
 * the head height for adults facing the camera.
 */
export const CROWN_FROM_EYES = 1.1;

export const FACE_PRESETS: Record<FaceCropMode, FacePreset> = {
  passport: {
    mode: 'passport',
    title: 'Passport photo 35 × 45 mm',
    source:
      'ICAO Doc 9303 / ISO/IEC 19794-5 full-frontal portrait as used for Schengen-area passports: 35 × 45 mm, head (chin to crown) 70–80 % of the photo height (32–36 mm), face centred, eyes level; 600 dpi print resolution.',
    widthMm: 35,
    heightMm: 45,
    dpi: 600,
    width: 827,
    height: 1063,
    headRatio: { min: 0.7, max: 0.8, target: 0.75 },
    crownMargin: 0.1,
    minEyeLineFromBottom: null,
    maxEyeTiltDeg: 2,
    maxCentreOffset: 0.05,
  },
  idcard: {
    mode: 'idcard',
    title: 'ID card photo 26 × 32 mm (PRC resident identity card)',
    source:
      'GA 461-2004, the digital photo standard of the PRC second-generation resident identity card: 26 × 32 mm at 350 dpi = 358 × 441 px, head about 2/3 of the photo height, hair top 7–21 px below the top edge, eye line at least 207 px above the bottom edge, white background.',
    widthMm: 26,
    heightMm: 32,
    dpi: 350,
    width: 358,
    height: 441,
    // "about 2/3", with the ±7 % the standard allows on face width (207 ± 14 px)
    headRatio: { min: 0.62, max: 0.71, target: 2 / 3 },
    crownMargin: 0.05,
    minEyeLineFromBottom: 207 / 441,
    maxEyeTiltDeg: 2,
    maxCentreOffset: 0.05,
  },
};

export function facePreset(mode: FaceCropMode): FacePreset {
  return FACE_PRESETS[mode];
}

/** The face detectors a job may ask for (FACE_DETECTOR is the worker's default). */
export const FACE_DETECTORS = ['tinyFaceDetector', 'ssdMobilenetv1'] as const;
export type FaceDetectorName = (typeof FACE_DETECTORS)[number];
export const FaceDetector = Type.Union(
  FACE_DETECTORS.map((d) => Type.Literal(d)),
  {
    description:
      "face detector for this job: tinyFaceDetector (fast) or ssdMobilenetv1 (finds more small or turned faces); the worker's FACE_DETECTOR when absent",
  },
);

export type FaceCropFormat = 'jpeg' | 'png' | 'webp';

/** The output format of a face crop: the one asked for, else png for a transparent background and jpeg otherwise. */
export function faceCropFormat(options: { format?: FaceCropFormat | undefined; background?: string | undefined }): FaceCropFormat {
  return options.format ?? (options.background === 'transparent' ? 'png' : 'jpeg');
}

/** Rules between face-crop options that a JSON schema cannot say; paths are relative to the options' owner. */
export function checkFaceCropOptions(options: { format?: FaceCropFormat | undefined; background?: string | undefined }): FieldProblem[] {
  if (options.background === 'transparent' && options.format === 'jpeg') {
    return [{ path: 'format', message: 'jpeg cannot be transparent: use png or webp with background=transparent' }];
  }
  return [];
}
