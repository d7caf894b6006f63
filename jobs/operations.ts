import { Type, type Static, type TSchema } from '@sinclair/typebox';
import type { FieldProblem } from './errors.js';
import { FaceDetector } from './face-presets.js';

/**
 * Processing operations (image-processing queue). Each operation is a tagged
 * object; a job carries an ordered list of them (a pipeline). The schema holds
 * the absolute bounds; `checkOperations` holds the rules a schema cannot say
 * and the limits that come from configuration (maximum width, …).
 * docs/processing.md describes every operation, its options and outputs.
 */
export const MAX_DIMENSION = 16384;

const Dimension = Type.Integer({ minimum: 1, maximum: MAX_DIMENSION });
const colour = (fallback: string, description: string) =>
  Type.String({ pattern: '^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$', default: fallback, description: `${description} (#rrggbb or #rrggbbaa)` });
const Quality = Type.Integer({ minimum: 1, maximum: 100, description: 'encoder quality 1–100 (lossy formats)' });
const Effort = Type.Integer({ minimum: 0, maximum: 9, description: 'CPU effort: webp 0–6, avif 0–9, png 0–9 (zlib level); higher is smaller and slower' });

export const OUTPUT_FORMATS = ['jpeg', 'png', 'webp', 'avif'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
const outputFormat = (extra: Record<string, unknown> = {}) => Type.Unsafe<OutputFormat>({ type: 'string', enum: [...OUTPUT_FORMATS], ...extra });
export const OutputFormat = outputFormat();

const FITS = ['cover', 'contain', 'inside', 'outside', 'fill'] as const;
const POSITIONS = ['centre', 'top', 'right', 'bottom', 'left', 'entropy', 'attention'] as const;

/** Defaults the worker applies when an option is left out (the schema's `default`s say the same for OpenAPI readers). */
export const DEFAULTS = {
  rotateBackground: '#000000',
  resizeFit: 'inside',
  resizePosition: 'centre',
  resizeBackground: '#000000',
  variantSizes: { sm: 640, md: 1024, lg: 1920 } as Record<string, number>,
  variantFormats: ['webp', 'avif'] as OutputFormat[],
  placeholderSize: 16,
  placeholderBlur: 1,
  placeholderFormat: 'webp' as OutputFormat,
  blurhashX: 4,
  blurhashY: 3,
  dominantColors: 5,
} as const;

function op<const N extends string, P extends Record<string, TSchema>>(name: N, properties: P, description: string) {
  return Type.Object({ op: Type.Literal(name), ...properties }, { additionalProperties: false, description, title: name });
}

export const RotateOp = op(
  'rotate',
  {
    angle: Type.Number({ minimum: -360, maximum: 360, description: 'degrees clockwise; any angle (multiples of 90 are exact turns, no resampling)' }),
    background: Type.Optional(colour(DEFAULTS.rotateBackground, 'fills the corners of a turn by an angle that is not a multiple of 90')),
  },
  'Rotate by any angle. The image grows to hold the rotated picture.',
);

export const ResizeOp = op(
  'resize',
  {
    width: Type.Optional(Dimension),
    height: Type.Optional(Dimension),
    fit: Type.Optional(Type.Unsafe<(typeof FITS)[number]>({ type: 'string', enum: [...FITS], default: DEFAULTS.resizeFit })),
    position: Type.Optional(
      Type.Unsafe<(typeof POSITIONS)[number]>({
        type: 'string',
        enum: [...POSITIONS],
        default: DEFAULTS.resizePosition,
        description: 'for fit=cover/contain: which part to keep (entropy/attention: the busiest part)',
      }),
    ),
    withoutEnlargement: Type.Optional(Type.Boolean({ default: true, description: 'never make the image larger than it is (false to allow)' })),
    background: Type.Optional(colour(DEFAULTS.resizeBackground, 'padding colour for fit=contain')),
  },
  'Resize keeping the aspect ratio (fit decides how). At least one of width/height.',
);

export const ForceResizeOp = op('force_resize', { width: Dimension, height: Dimension }, 'Resize to exactly width × height; the aspect ratio is not kept.');

export const ConvertOp = op(
  'convert',
  {
    format: OutputFormat,
    quality: Type.Optional(Quality),
    lossless: Type.Optional(Type.Boolean({ description: 'webp/avif only' })),
    effort: Type.Optional(Effort),
  },
  'Encode in another format; later steps keep this format and these settings.',
);

export const VariantsOp = op(
  'variants',
  {
    sizes: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-z0-9_]{1,16}$' }), Dimension, {
        minProperties: 1,
        maxProperties: 6,
        default: DEFAULTS.variantSizes,
        description: 'name → width; never larger than the image',
        additionalProperties: false,
      }),
    ),
    formats: Type.Optional(Type.Array(OutputFormat, { minItems: 1, maxItems: 4, uniqueItems: true, default: DEFAULTS.variantFormats })),
    quality: Type.Optional(Quality),
  },
  'Responsive variants: every size in every format. The pipeline image is not changed.',
);

export const PlaceholderOp = op(
  'placeholder',
  {
    size: Type.Optional(Type.Integer({ minimum: 4, maximum: 64, default: DEFAULTS.placeholderSize, description: 'longest side of the tiny image' })),
    blur: Type.Optional(Type.Number({ minimum: 0, maximum: 10, default: DEFAULTS.placeholderBlur, description: 'gaussian sigma at tiny size; 0 = none' })),
    format: Type.Optional(outputFormat({ default: DEFAULTS.placeholderFormat })),
    componentsX: Type.Optional(Type.Integer({ minimum: 1, maximum: 9, default: DEFAULTS.blurhashX, description: 'BlurHash components across' })),
    componentsY: Type.Optional(Type.Integer({ minimum: 1, maximum: 9, default: DEFAULTS.blurhashY, description: 'BlurHash components down' })),
  },
  'A tiny blurred image as a data URL, and a BlurHash string. The pipeline image is not changed.',
);

export const MetadataOp = op(
  'metadata',
  { colors: Type.Optional(Type.Integer({ minimum: 1, maximum: 10, default: DEFAULTS.dominantColors, description: 'dominant colours to report' })) },
  'Dimensions, format, bytes, EXIF orientation/camera/date, dominant colours and a perceptual hash. Stores no file.',
);

export const StripOp = op(
  'strip',
  {},
  'Stores a clean copy (no EXIF, GPS, XMP, IPTC or ICC) of the image as it is, and drops the source EXIF from the pipeline so later steps report none.',
);

export const FacesOp = Type.Object(
  { op: Type.Literal('faces'), detector: Type.Optional(FaceDetector) },
  {
    additionalProperties: false,
    description:
      "Tag faces: detect every face, store a 128-d descriptor per face and group them into the vendor's persons (GET /api/persons). The image passes through unchanged.",
  },
);
export type FacesOp = Static<typeof FacesOp>;

/**
 * `discriminator` lets Ajv (and OpenAPI readers) pick the branch by `op`, so a
 * bad option is reported against its own operation, not as "no branch matched".
 */
const OPERATIONS = [RotateOp, ResizeOp, ForceResizeOp, ConvertOp, VariantsOp, PlaceholderOp, MetadataOp, StripOp, FacesOp] as const;
export type Operation = Static<(typeof OPERATIONS)[number]>;
export const Operation = Type.Unsafe<Operation>({ type: 'object', oneOf: [...OPERATIONS], discriminator: { propertyName: 'op' } });

export const OPERATION_NAMES = OPERATIONS.map((o) => o.properties.op.const) as readonly Operation['op'][];
export type OperationName = Operation['op'];
export type OperationOf<N extends OperationName> = Extract<Operation, { op: N }>;

export const MAX_OPERATIONS = 20;
export const Operations = Type.Array(Operation, { minItems: 1, maxItems: MAX_OPERATIONS });

/** Operations whose result is a single top-level field of the job result, so a pipeline holds at most one of each. */
const ONCE_PER_PIPELINE: readonly string[] = ['variants', 'placeholder', 'metadata'];

export interface OperationLimits {
  maxDimension: number;
}

/**
 * Checks the rules a JSON schema cannot express or that depend on
 * configuration. Paths are relative to the operations array's owner, e.g.
 * `operations/2/width`.
 */
export function checkOperations(operations: readonly Operation[], limits: OperationLimits): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const seen = new Set<string>();
  const tooLarge = (path: string, value: number | undefined) => {
    if (value !== undefined && value > limits.maxDimension) problems.push({ path, message: `must be <= ${limits.maxDimension}` });
  };
  operations.forEach((o, i) => {
    const at = `operations/${i}`;
    if (ONCE_PER_PIPELINE.includes(o.op)) {
      if (seen.has(o.op)) problems.push({ path: `${at}/op`, message: `${o.op} may appear once per pipeline` });
      seen.add(o.op);
    }
    switch (o.op) {
      case 'resize':
        if (o.width === undefined && o.height === undefined) problems.push({ path: at, message: 'resize needs width, height or both' });
        tooLarge(`${at}/width`, o.width);
        tooLarge(`${at}/height`, o.height);
        break;
      case 'force_resize':
        tooLarge(`${at}/width`, o.width);
        tooLarge(`${at}/height`, o.height);
        break;
      case 'convert':
        problems.push(...checkEncoding(at, o.format, o));
        break;
      case 'variants':
        for (const [name, width] of Object.entries(o.sizes ?? {})) tooLarge(`${at}/sizes/${name}`, width);
        break;
      default:
        break;
    }
  });
  return problems;
}

/** Encoder options that do not apply to the chosen format are refused rather than silently ignored. */
function checkEncoding(at: string, format: OutputFormat, o: { quality?: number; lossless?: boolean; effort?: number }): FieldProblem[] {
  const problems: FieldProblem[] = [];
  if (o.quality !== undefined && format === 'png') problems.push({ path: `${at}/quality`, message: 'png is lossless; quality does not apply' });
  if (o.lossless !== undefined && (format === 'jpeg' || format === 'png')) {
    problems.push({ path: `${at}/lossless`, message: `applies to webp and avif only, not ${format}` });
  }
  if (o.effort !== undefined) {
    const max = format === 'webp' ? 6 : format === 'avif' || format === 'png' ? 9 : -1;
    if (max < 0) problems.push({ path: `${at}/effort`, message: `applies to webp, avif and png only, not ${format}` });
    else if (o.effort > max) problems.push({ path: `${at}/effort`, message: `must be <= ${max} for ${format}` });
  }
  return problems;
}
