import { Type, type Static } from '@sinclair/typebox';
import type { FieldProblem } from './errors.js';
import { checkOperations, MAX_DIMENSION, OPERATION_NAMES, Operations, OutputFormat, type Operation, type OperationLimits } from './operations.js';

/**
 * Named pipelines from the seeds, so a client can ask for "what NextGallery
 * does with an upload" instead of spelling the operations out:
 *
 * - `nextgallery` (seed 000): store a clean copy (`strip`), a blur
 *   placeholder, and face tagging when `faces: true` (the `faces` operation;
 *   a server without it answers 400 for `faces: true` and runs the rest).
 * - `gallery-variants` (seed 002): `metadata`, then `variants` (sm/md/lg ×
 *   webp/avif unless `sizes`/`formats`/`quality` say otherwise).
 *
 * A request carries either `operations` or `preset` (+ `presetOptions`);
 * `resolvePipeline` turns it into the operation list a job runs, checking
 * everything `checkOperations` checks. Pure: routes call it and answer 400
 * with the problems.
 */
export const PRESET_NAMES = ['nextgallery', 'gallery-variants'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];
export const PresetName = Type.Unsafe<PresetName>({ type: 'string', enum: [...PRESET_NAMES], description: 'a named pipeline (docs/processing.md)' });

export const PresetOptions = Type.Object(
  {
    faces: Type.Optional(Type.Boolean({ description: 'nextgallery: also detect and tag faces (default false)' })),
    sizes: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-z0-9_]{1,16}$' }), Type.Integer({ minimum: 1, maximum: MAX_DIMENSION }), {
        minProperties: 1,
        maxProperties: 6,
        description: 'gallery-variants: name → width (default sm 640, md 1024, lg 1920)',
        additionalProperties: false,
      }),
    ),
    formats: Type.Optional(Type.Array(OutputFormat, { minItems: 1, maxItems: 4, uniqueItems: true, description: 'gallery-variants: default webp, avif' })),
    quality: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, description: 'gallery-variants: encoder quality' })),
  },
  { additionalProperties: false },
);
export type PresetOptions = Static<typeof PresetOptions>;

/** Body fields for a route that accepts a pipeline; spread them into its body schema. */
export const PipelineFields = {
  operations: Type.Optional(Operations),
  preset: Type.Optional(PresetName),
  presetOptions: Type.Optional(PresetOptions),
};

export interface PipelineRequest {
  operations?: readonly Operation[] | undefined;
  preset?: PresetName | undefined;
  presetOptions?: PresetOptions | undefined;
}

export interface PipelineLimits extends OperationLimits {
  /** operation names this server runs (default: all it knows); presets leave out or refuse the rest */
  available?: readonly string[];
}

const OPTIONS_OF: Record<PresetName, readonly (keyof PresetOptions)[]> = {
  nextgallery: ['faces'],
  'gallery-variants': ['sizes', 'formats', 'quality'],
};

/**
 * The operations a request stands for, or the problems with it (paths as in
 * the request body: `operations/1/width`, `preset`, `presetOptions/faces`).
 */
export function resolvePipeline(request: PipelineRequest, limits: PipelineLimits): { operations: Operation[]; problems: FieldProblem[] } {
  const { operations, preset, presetOptions } = request;
  if (operations !== undefined && preset !== undefined) {
    return { operations: [], problems: [{ path: 'preset', message: 'give either operations or a preset, not both' }] };
  }
  if (preset === undefined) {
    if (presetOptions !== undefined) return { operations: [], problems: [{ path: 'presetOptions', message: 'applies only with a preset' }] };
    if (operations === undefined) return { operations: [], problems: [{ path: 'operations', message: 'is required (or a preset)' }] };
    return { operations: [...operations], problems: checkOperations(operations, limits) };
  }
  const options = presetOptions ?? {};
  const problems: FieldProblem[] = [];
  for (const key of Object.keys(options) as (keyof PresetOptions)[]) {
    if (!OPTIONS_OF[preset].includes(key)) problems.push({ path: `presetOptions/${key}`, message: `is not an option of preset ${preset}` });
  }
  const available = limits.available ?? OPERATION_NAMES;
  if (preset === 'nextgallery' && options.faces && !available.includes('faces')) {
    problems.push({ path: 'presetOptions/faces', message: 'face tagging is not available on this server' });
  }
  for (const [name, width] of Object.entries(options.sizes ?? {})) {
    if (width > limits.maxDimension) problems.push({ path: `presetOptions/sizes/${name}`, message: `must be <= ${limits.maxDimension}` });
  }
  if (problems.length > 0) return { operations: [], problems };
  const resolved = presetOperations(preset, options);
  // Presets are built from valid options, so this only fires on a bug in a preset.
  return { operations: resolved, problems: checkOperations(resolved, limits).map((p) => ({ path: `preset (${p.path})`, message: p.message })) };
}

/** The operation list of a preset; options it does not use are ignored. */
export function presetOperations(preset: PresetName, options: PresetOptions = {}): Operation[] {
  switch (preset) {
    case 'nextgallery':
      return [
        { op: 'strip' },
        { op: 'placeholder' },
        // `faces` is the face-tagging operation; this cast lets the preset name
        // it on a build where it is not in the Operation union yet.
        ...(options.faces ? [{ op: 'faces' } as unknown as Operation] : []),
      ];
    case 'gallery-variants':
      return [
        { op: 'metadata' },
        {
          op: 'variants',
          ...(options.sizes ? { sizes: options.sizes } : {}),
          ...(options.formats ? { formats: options.formats } : {}),
          ...(options.quality !== undefined ? { quality: options.quality } : {}),
        },
      ];
  }
}
