import { Type, type Static } from '@sinclair/typebox';
import { Operations } from './operations.js';
import { FaceDetector } from './face-presets.js';
import { CROP_MARGIN_PATTERN, MAX_MARGIN_PX, POSITION_PATTERN, ROI_PATTERN, SCALE_PATTERN } from './cutout-options.js';

/**
 * What a Bull job carries: ids, where the source is, and options. Never image
 * bytes, never credentials. The Bull job id equals `jobId`, the ledger id.
 */
export const UrlSource = Type.Object({ type: Type.Literal('url'), url: Type.String({ format: 'uri', maxLength: 2048 }) }, { additionalProperties: false });
export const StoredSource = Type.Object(
  {
    type: Type.Literal('stored'),
    key: Type.String({ maxLength: 512 }),
    url: Type.String({ maxLength: 2048 }),
  },
  { additionalProperties: false, description: 'an upload already written through the storage layer' },
);
export const JobSource = Type.Union([UrlSource, StoredSource]);
export type JobSource = Static<typeof JobSource>;

export const HexColor = Type.String({ pattern: '^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$' });

export const RemoveBgOptions = Type.Object(
  {
    model: Type.Optional(Type.String({ pattern: '^[a-z0-9_-]{1,64}$', default: 'u2netp' })),
    format: Type.Optional(
      Type.Union([Type.Literal('png'), Type.Literal('webp'), Type.Literal('jpeg'), Type.Literal('zip')], {
        default: 'png',
        description: 'zip: color.jpg (the colours) and alpha.png (the matte) in one ZIP, as remove.bg sends it',
      }),
    ),
    background: Type.Optional(HexColor),
    backgroundImageUrl: Type.Optional(
      Type.String({
        format: 'uri',
        maxLength: 2048,
        description: 'an image put behind the subject, scaled to cover the canvas and centred; fetched like a source (same address rules and limits)',
      }),
    ),
    channels: Type.Optional(
      Type.Union([Type.Literal('rgba'), Type.Literal('alpha')], { description: 'rgba (default): the cut-out; alpha: the matte alone, as a greyscale image' }),
    ),
    crop: Type.Optional(Type.Boolean({ description: 'crop off the empty (transparent) regions around the subject (default false)' })),
    cropMargin: Type.Optional(
      Type.String({
        pattern: CROP_MARGIN_PATTERN,
        maxLength: 64,
        description: `with crop: margin around the subject, 1, 2 or 4 values in px or % of the subject (e.g. "30px", "10% 5%"); at most 50 % of the subject or ${MAX_MARGIN_PX} px per side`,
      }),
    ),
    scale: Type.Optional(
      Type.String({
        pattern: SCALE_PATTERN,
        maxLength: 16,
        description: 'the subject scaled to this share of the canvas, "10%" to "100%", or "original" (default)',
      }),
    ),
    position: Type.Optional(
      Type.String({
        pattern: POSITION_PATTERN,
        maxLength: 32,
        description: '"original" (default without scale), "center" (default with scale), or "X%" / "X% Y%" of the free space',
      }),
    ),
    roi: Type.Optional(
      Type.String({
        pattern: ROI_PATTERN,
        maxLength: 64,
        description: 'region of interest "x1 y1 x2 y2" (px or %): only this rectangle can be foreground; the rest is removed',
      }),
    ),
    maxPixels: Type.Optional(Type.Integer({ minimum: 1, description: 'the photo is scaled down to at most this many pixels before the cut-out' })),
    subject: Type.Optional(
      Type.Union([Type.Literal('auto'), Type.Literal('person'), Type.Literal('product'), Type.Literal('car')], {
        description: "the caller's hint of what the foreground is (remove.bg's type); every value uses the same model",
      }),
    ),
  },
  { additionalProperties: false },
);
export type RemoveBgOptions = Static<typeof RemoveBgOptions>;

export const FaceCropOptions = Type.Object(
  {
    mode: Type.Union([Type.Literal('passport'), Type.Literal('idcard')], { description: 'photo standard (jobs/face-presets.ts, docs/face-crop.md)' }),
    format: Type.Optional(
      Type.Union([Type.Literal('jpeg'), Type.Literal('png'), Type.Literal('webp')], {
        description: 'output format; jpeg by default, png when background is transparent (jpeg cannot be transparent)',
      }),
    ),
    background: Type.Optional(
      Type.Union([Type.Literal('original'), Type.Literal('white'), Type.Literal('transparent')], {
        default: 'original',
        description: 'original keeps the photo (padding takes the colour of its edge); white and transparent cut the person out',
      }),
    ),
    face: Type.Optional(
      Type.Union([Type.Literal('only'), Type.Literal('largest')], {
        default: 'largest',
        description: 'only: fail with MULTIPLE_FACES when the photo shows more than one face; largest: crop the largest',
      }),
    ),
    tagFaces: Type.Optional(Type.Boolean({ default: false, description: "also tag every face of the photo into the vendor's persons (GET /api/persons)" })),
    detector: Type.Optional(FaceDetector),
  },
  { additionalProperties: false },
);
export type FaceCropOptions = Static<typeof FaceCropOptions>;

export const ProcessOptions = Type.Object({ operations: Operations }, { additionalProperties: false });
export type ProcessOptions = Static<typeof ProcessOptions>;

/**
 * The fields every payload has; jobs/kinds.ts adds `kind` and that kind's
 * `options` (`payloadSchema`) and derives the payload types.
 */
export const CommonPayloadFields = Type.Object({
  jobId: Type.String(),
  vendorId: Type.String(),
  projectId: Type.String(),
  recordId: Type.String(),
  batchId: Type.Union([Type.String(), Type.Null()]),
  source: JobSource,
  /** storage key prefix for this job's outputs; fixed at enqueue so retries overwrite, never litter */
  outputPrefix: Type.String(),
});

export type { JobPayload, OptionsOf, PayloadOf } from './kinds.js';

/** One stored file a job produced. */
export const JobOutput = Type.Object({
  name: Type.String(),
  url: Type.String(),
  key: Type.String(),
  format: Type.String(),
  width: Type.Integer(),
  height: Type.Integer(),
  bytes: Type.Integer(),
});
export type JobOutput = Static<typeof JobOutput>;
