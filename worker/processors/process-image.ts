import type { ResizeOptions, Sharp } from 'sharp';
import { encode as blurhash } from 'blurhash';
import { AppError } from '../../jobs/errors.js';
import { DEFAULTS, type Operation, type OperationName, type OperationOf } from '../../jobs/operations.js';
import type { JobOutput } from '../../jobs/payloads.js';
import { checkPixelBudget, type PixelBudget } from '../../jobs/pixel-budget.js';
import type { ImageInfo } from '../../platform/images.js';
import { CONTENT_TYPES } from '../../platform/storage/index.js';
import type { JobContext, Processor, ProcessorOutput } from '../context.js';
import { tagPipelineFaces, type FaceTagger } from '../faces/tagging.js';
import { dominantColors, NO_EXIF, perceptualHash, readExif, type DominantColor, type ExifFacts } from './image-facts.js';
import { iccDescription } from '../../platform/icc.js';
import {
  decodeFrame,
  encode,
  frameHasAlpha,
  frameSize,
  fromPixels,
  naturalFormat,
  openFrame,
  toPixels,
  type Encoded,
  type Encoding,
  type Frame,
  uprightSize,
} from './pixels.js';

/**
 * The image-processing queue: an ordered pipeline of operations over one
 * source. Each step reads the image the previous steps left (decoded pixels
 * kept in memory once anything changed them, the source file until then),
 * every image a step makes is stored and listed in the result, and data a
 * step makes (placeholder, variants, metadata) becomes its own top-level
 * result field, which the runner writes to data_records in chunks.
 * docs/processing.md is the user's description of all this.
 */

/** Long-lived resources that steps need, built once per worker (e.g. a face detector for a `faces` step). */
export interface ProcessImageDeps {
  /** face detection and tagging, for the `faces` operation; null in a worker without the face models */
  faces?: FaceTagger | null;
  /** MAX_OUTPUT_PIXELS and MAX_JOB_ENCODED_PIXELS; without it, no pipeline is refused for its size */
  budget?: PixelBudget;
}

/** One stored file, and the step that made it. */
export interface ProcessOutput extends JobOutput {
  step: number;
  op: string;
}

/** What the steps share: the current image and how images are written. */
export interface Pipeline {
  frame: Frame;
  /** format and encoder settings of image outputs: the source's format until a `convert` */
  encoding: Encoding;
  source: { bytes: Buffer; info: ImageInfo };
  /** a `strip` ran: the source's EXIF and profile no longer describe the image */
  stripped: boolean;
}

export interface StepContext {
  index: number;
  pipeline: Readonly<Pipeline>;
  /** later steps read the image, so a step that changes it keeps its pixels for them */
  readLater: boolean;
  job: JobContext<'process'>;
  deps: ProcessImageDeps;
  /** stores one image this step made; `variant` tells several apart */
  store(image: Encoded, variant?: string): Promise<ProcessOutput>;
}

export interface StepResult {
  outputs: ProcessOutput[];
  /** the output standing for the image at this point; the last one is the job's photoUrl */
  primary?: ProcessOutput;
  /** top-level result fields this step adds */
  fields?: Record<string, unknown>;
  /** what changes for later steps */
  next?: Partial<Pipeline>;
}

export type Step<N extends OperationName> = (c: StepContext, op: OperationOf<N>) => Promise<StepResult>;

/**
 * One line per operation. A new operation is its schema in the Operation
 * union (jobs/operations.ts) and a line here; `openFrame(c.pipeline.frame)`
 * reads the image, `c.store` keeps an image it makes, `fields` carries its
 * data, `c.deps` the resources it was built with (createProcessImage).
 * Steps that decode the full-size image belong in FULL_READS below.
 */
export const STEPS: { [N in OperationName]: Step<N> } = {
  rotate: (c, op) => transform(c, (s) => s.rotate(op.angle, { background: op.background ?? DEFAULTS.rotateBackground })),
  resize: (c, op) => transform(c, (s) => s.resize(resizeOptions(op))),
  force_resize: (c, op) => transform(c, (s) => s.resize({ width: op.width, height: op.height, fit: 'fill' })),
  convert: (c, op) => reencode(c, { format: op.format, quality: op.quality, lossless: op.lossless, effort: op.effort }),
  strip: (c) => strip(c),
  variants: (c, op) => variants(c, op),
  placeholder: (c, op) => placeholder(c, op),
  metadata: (c, op) => metadata(c, op),
  faces: async (c, op) => ({ outputs: [], fields: { faces: await tagPipelineFaces(c.deps.faces ?? null, openFrame(c.pipeline.frame), op, c.job) } }),
};

/** Steps that decode the image at full size; the others read a reduced copy. */
const FULL_READS: ReadonlySet<string> = new Set(['rotate', 'resize', 'force_resize', 'convert', 'strip']);
const CHANGES_PIXELS: ReadonlySet<string> = new Set(['rotate', 'resize', 'force_resize']);

export function createProcessImage(deps: ProcessImageDeps = {}): Processor<'process'> {
  return async (ctx) => {
    const operations = ctx.payload.options.operations;
    const source = await ctx.loadSource();
    // The API checked what the request alone tells; the source's real size
    // tells the rest, before any pixel work (a refusal is final, not retried).
    const overBudget = deps.budget && checkPixelBudget(operations, uprightSize(source.info), deps.budget);
    if (overBudget) throw new AppError(overBudget.code, `operations/${overBudget.step}: ${overBudget.message}`);
    let pipeline: Pipeline = {
      frame: { kind: 'encoded', bytes: source.bytes, info: source.info },
      encoding: { format: naturalFormat(source.info.format) },
      source,
      stripped: false,
    };
    await ctx.progress(10);

    const outputs: ProcessOutput[] = [];
    const steps: { step: number; op: string; outputs: string[] }[] = [];
    const fields: Record<string, unknown> = {};
    let primary: ProcessOutput | undefined;
    for (const [index, op] of operations.entries()) {
      ctx.signal.throwIfAborted();
      if (pipeline.frame.kind === 'encoded' && decodeOnceBefore(operations, index)) pipeline = { ...pipeline, frame: await decodeFrame(pipeline.frame) };
      const step = STEPS[op.op] as Step<OperationName> | undefined;
      if (!step) throw new AppError('INTERNAL', `this worker does not know the operation "${op.op}"`);
      const result = await step(stepContext(ctx, deps, pipeline, operations, index), op as never);
      outputs.push(...result.outputs);
      steps.push({ step: index, op: op.op, outputs: result.outputs.map((o) => o.name) });
      primary = result.primary ?? primary;
      Object.assign(fields, result.fields);
      if (result.next) pipeline = { ...pipeline, ...result.next };
      if (index < operations.length - 1) await ctx.progress(10 + (85 * (index + 1)) / operations.length);
    }

    const { width, height } = uprightSize(source.info);
    return {
      result: {
        success: true,
        photoUrl: primary?.url ?? null,
        width: primary?.width ?? null,
        height: primary?.height ?? null,
        format: primary?.format ?? null,
        outputs,
        steps,
        source: { format: source.info.format, width, height, orientation: source.info.orientation, bytes: source.info.bytes },
        ...fields,
      },
      record: { processedPhotoUrl: primary?.url ?? null, width: primary?.width ?? null, height: primary?.height ?? null },
      recordFields: { 'process.outputs': outputs, ...Object.fromEntries(Object.entries(fields).map(([k, v]) => [`process.${k}`, v])) },
    } satisfies ProcessorOutput;
  };
}

export const processImage: Processor<'process'> = createProcessImage();

/**
 * Decode the source once, up front, when two or more upcoming steps would
 * each decode it in full (say `strip` then `convert`). A single full read
 * streams from the file instead, where libvips can shrink while decoding.
 */
function decodeOnceBefore(operations: readonly Operation[], index: number): boolean {
  if (CHANGES_PIXELS.has(operations[index]!.op)) return false;
  let fullReads = 0;
  for (const op of operations.slice(index)) {
    if (FULL_READS.has(op.op)) fullReads++;
    if (CHANGES_PIXELS.has(op.op)) break;
  }
  return fullReads >= 2;
}

function stepContext(ctx: JobContext<'process'>, deps: ProcessImageDeps, pipeline: Pipeline, operations: readonly Operation[], index: number): StepContext {
  const op = operations[index]!.op;
  return {
    index,
    pipeline,
    readLater: index < operations.length - 1,
    job: ctx,
    deps,
    async store(image, variant) {
      const name = `${index}-${op}${variant ? `-${variant}` : ''}`;
      const stored = await ctx.store(name, image.data, { format: image.format, width: image.width, height: image.height });
      return { ...stored, step: index, op };
    },
  };
}

/** A step that changes the pixels; its result stays in memory when later steps need it. */
async function transform(c: StepContext, build: (image: Sharp) => Sharp): Promise<StepResult> {
  const image = build(openFrame(c.pipeline.frame));
  if (!c.readLater) {
    const output = await c.store(await encode(image, c.pipeline.encoding));
    return { outputs: [output], primary: output };
  }
  const pixels = await toPixels(image);
  const output = await c.store(await encode(fromPixels(pixels), c.pipeline.encoding));
  return { outputs: [output], primary: output, next: { frame: { kind: 'pixels', pixels } } };
}

function resizeOptions(op: OperationOf<'resize'>): ResizeOptions {
  return {
    ...(op.width !== undefined ? { width: op.width } : {}),
    ...(op.height !== undefined ? { height: op.height } : {}),
    fit: op.fit ?? DEFAULTS.resizeFit,
    position: op.position ?? DEFAULTS.resizePosition,
    withoutEnlargement: op.withoutEnlargement ?? true,
    background: op.background ?? DEFAULTS.resizeBackground,
  };
}

/** `convert`: the image in another format; later image outputs use it too. */
async function reencode(c: StepContext, encoding: Encoding): Promise<StepResult> {
  const output = await c.store(await encode(openFrame(c.pipeline.frame), encoding));
  return { outputs: [output], primary: output, next: { encoding } };
}

/**
 * `strip`: outputs are always encoded from pixels without metadata, so what
 * strip adds is a stored clean copy at this point and the end of the source's
 * EXIF and profile in the pipeline: a later `metadata` step reports none.
 */
async function strip(c: StepContext): Promise<StepResult> {
  const output = await c.store(await encode(openFrame(c.pipeline.frame), c.pipeline.encoding));
  return { outputs: [output], primary: output, next: { stripped: true } };
}

export interface VariantEntry {
  name: string;
  format: string;
  width: number;
  height: number;
  url: string;
  key: string;
  bytes: number;
}

/**
 * `variants`: each size is resized once (from the file, shrinking while
 * decoding, or from pixels in memory) and encoded in every format. Sizes
 * wider than the image give the image's own width: never enlarged.
 */
async function variants(c: StepContext, op: OperationOf<'variants'>): Promise<StepResult> {
  const sizes = Object.entries(op.sizes ?? DEFAULTS.variantSizes);
  const formats = op.formats ?? DEFAULTS.variantFormats;
  const outputs: ProcessOutput[] = [];
  const entries: VariantEntry[] = [];
  for (const [name, width] of sizes) {
    const resized = openFrame(c.pipeline.frame).resize({ width, withoutEnlargement: true });
    const pixels = formats.length > 1 ? await toPixels(resized) : undefined;
    for (const format of formats) {
      const encoded = await encode(pixels ? fromPixels(pixels) : resized, { format, quality: op.quality });
      const output = await c.store(encoded, `${name}-${format}`);
      outputs.push(output);
      entries.push({ name, format, width: output.width, height: output.height, url: output.url, key: output.key, bytes: output.bytes });
    }
  }
  const widest = outputs.filter((o) => o.format === formats[0]).sort((a, b) => b.width - a.width)[0];
  return { outputs, ...(widest ? { primary: widest } : {}), fields: { variants: entries } };
}

export interface PlaceholderResult {
  dataUrl: string;
  blurhash: string;
  width: number;
  height: number;
  format: string;
  url: string;
}

/**
 * `placeholder`: one small decode (libvips shrinks JPEGs while decoding)
 * serves both the BlurHash, computed on a ≤32 px copy, and the tiny blurred
 * image, which is inlined as a data URL and also stored.
 */
async function placeholder(c: StepContext, op: OperationOf<'placeholder'>): Promise<StepResult> {
  const size = op.size ?? DEFAULTS.placeholderSize;
  const work = Math.max(size, 32);
  const small = await toPixels(openFrame(c.pipeline.frame).resize(work, work, { fit: 'inside', withoutEnlargement: true }).ensureAlpha());
  const hash = blurhash(
    new Uint8ClampedArray(small.data.buffer, small.data.byteOffset, small.data.length),
    small.width,
    small.height,
    op.componentsX ?? DEFAULTS.blurhashX,
    op.componentsY ?? DEFAULTS.blurhashY,
  );
  let tiny = fromPixels(small).resize(size, size, { fit: 'inside', withoutEnlargement: true });
  if (!frameHasAlpha(c.pipeline.frame)) tiny = tiny.removeAlpha();
  const sigma = op.blur ?? DEFAULTS.placeholderBlur;
  // sharp's smallest gaussian is 0.3; below that there is nothing to see at this size anyway
  if (sigma >= 0.3) tiny = tiny.blur(sigma);
  const format = op.format ?? DEFAULTS.placeholderFormat;
  const encoded = await encode(tiny, { format });
  const output = await c.store(encoded);
  const result: PlaceholderResult = {
    dataUrl: `data:${CONTENT_TYPES[format]};base64,${encoded.data.toString('base64')}`,
    blurhash: hash,
    width: encoded.width,
    height: encoded.height,
    format,
    url: output.url,
  };
  return { outputs: [output], fields: { placeholder: result } };
}

export interface MetadataResult extends ExifFacts {
  /** the image at this step, upright */
  width: number;
  height: number;
  /** the source file's format and size */
  format: string;
  bytes: number;
  hasAlpha: boolean;
  /** the source's ICC profile (pixels are converted from it to sRGB) */
  colorProfile: string | null;
  dominantColors: DominantColor[];
  /** 64-bit perceptual hash, 16 hex digits; compare by Hamming distance */
  phash: string;
}

/** `metadata`: stores no file; one 64 × 64 decode serves the colours and the hash. */
async function metadata(c: StepContext, op: OperationOf<'metadata'>): Promise<StepResult> {
  const { frame, source, stripped } = c.pipeline;
  const thumb = await toPixels(openFrame(frame).resize(64, 64, { fit: 'fill' }));
  const header = stripped ? undefined : source.info.header;
  const exif = header ? await readExif(header.exif) : NO_EXIF;
  const result: MetadataResult = {
    ...frameSize(frame),
    format: source.info.format,
    bytes: source.info.bytes,
    hasAlpha: frameHasAlpha(frame),
    ...exif,
    colorProfile: header ? iccDescription(header.icc) : null,
    dominantColors: dominantColors(thumb, op.colors ?? DEFAULTS.dominantColors),
    phash: await perceptualHash(thumb),
  };
  return { outputs: [], fields: { metadata: result } };
}
