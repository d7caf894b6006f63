import { Type } from '@sinclair/typebox';
import { env } from '../../platform/config.js';

/**
 * The face engine's variables (face crop and face tagging), spread into the
 * worker's schema. Presets themselves are code (jobs/face-presets.ts); only
 * what an operator tunes per installation lives here.
 */
export const FaceSection = {
  FACE_DETECTOR: env.enum(
    ['tinyFaceDetector', 'ssdMobilenetv1'],
    'tinyFaceDetector',
    'face detector: tinyFaceDetector (fast) or ssdMobilenetv1 (more accurate on small, turned or partly hidden faces, about 3× slower)',
  ),
  FACE_DETECT_MAX_SIDE: env.int(
    640,
    'the photo is downscaled to this longest side for detection only; landmarks and descriptors are then computed at full resolution',
    { minimum: 160, maximum: 4096 },
  ),
  FACE_TINY_INPUT_SIZES: env.string(
    '224,416',
    'input sizes tinyFaceDetector runs at, merged (multiples of 32): small sizes find faces that fill a portrait, larger ones faces in a group',
    { pattern: '^\\s*\\d+\\s*(,\\s*\\d+\\s*)*$' },
  ),
  FACE_MIN_SCORE: Type.Number({ default: 0.5, minimum: 0.05, maximum: 0.99, description: 'detections scored below this are not faces' }),
  FACE_MIN_HEAD_PX_PASSPORT: env.int(
    240,
    'passport crops fail with FACE_TOO_SMALL when the head (chin to crown) is shorter than this many source pixels (the crop is upscaled up to ~3.3× at the default)',
    { minimum: 16, maximum: 10_000 },
  ),
  FACE_MIN_HEAD_PX_IDCARD: env.int(
    160,
    'idcard crops fail with FACE_TOO_SMALL when the head (chin to crown) is shorter than this many source pixels (the crop is upscaled up to ~1.8× at the default)',
    { minimum: 16, maximum: 10_000 },
  ),
  FACE_ONLY_IGNORE_BELOW: Type.Number({
    default: 0.35,
    minimum: 0,
    maximum: 1,
    description:
      'with face=only, faces whose box is less than this fraction of the largest face box height are background faces and do not count (0 = every face counts)',
  }),
  FACE_BACKGROUND_MODEL: env.string(
    '',
    "rembg model that cuts the person out for white/transparent backgrounds (e.g. u2net_human_seg, made for people); empty = the rembg service's default",
    { pattern: '^[a-z0-9_-]{0,64}$' },
  ),
  FACE_PERSON_MAX_DISTANCE: Type.Number({
    default: 0.4,
    minimum: 0.1,
    maximum: 1.2,
    description:
      "face tagging: a face joins the vendor's nearest person when the euclidean distance of its 128-d descriptor to the person's mean is below this",
  }),
  FACE_PERSON_CANDIDATES: env.int(
    250,
    "face tagging: persons read per face on either side of its descriptor's sketch, so a job reads a bounded set of the vendor's persons, not all",
    { minimum: 1, maximum: 10_000 },
  ),
  FACE_TAG_MIN_FACE_PX: env.int(
    40,
    'face tagging skips faces whose detection box is narrower than this many source pixels (their descriptors are unreliable)',
    {
      minimum: 8,
      maximum: 4096,
    },
  ),
};

/** FACE_TINY_INPUT_SIZES as numbers; each must be a multiple of 32 between 128 and 1024. */
export function tinyInputSizes(value: string): number[] {
  const sizes = value.split(',').map((s) => Number(s.trim()));
  for (const size of sizes) {
    if (!Number.isInteger(size) || size % 32 !== 0 || size < 128 || size > 1024) {
      throw new Error(`FACE_TINY_INPUT_SIZES: ${size} is not a multiple of 32 between 128 and 1024`);
    }
  }
  return sizes;
}
