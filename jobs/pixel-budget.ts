import { DEFAULTS, type Operation, type OperationOf } from './operations.js';

/**
 * The pixel budget of a processing pipeline (issue 18): every image a step
 * makes, kept in memory or stored, holds at most `maxOutputPixels`, and the
 * images a job encodes hold at most `maxJobEncodedPixels` together. Without
 * it, a 1×1 PNG with [force_resize 8192×8192, rotate 45, rotate 45] made a
 * 16384×16384 image (268 Mpx) and took 850 MiB of a shared worker.
 *
 * `pipelineSizes` follows the image through the operations the way sharp
 * sizes them (rotate's larger canvas, resize's fits and withoutEnlargement,
 * variants never enlarged). From an unknown source (a URL the API has not
 * fetched) only sizes the request fixes are known: a force_resize, a
 * contain, and every step after them. The API refuses what it can know
 * (400); the worker checks again with the source's real size before any
 * pixel work. Pure: no I/O.
 */
export interface Size {
  width: number;
  height: number;
}

export interface PixelBudget {
  maxOutputPixels: number;
  maxJobEncodedPixels: number;
}

export type BudgetCode = 'OUTPUT_TOO_LARGE' | 'JOB_TOO_LARGE';

export interface BudgetProblem {
  /** index of the operation that goes over */
  step: number;
  code: BudgetCode;
  message: string;
}

/** The budget from configuration: 0 means MAX_INPUT_PIXELS for outputs and four full-size outputs for a job. */
export function pixelBudgetOf(config: { MAX_INPUT_PIXELS: number; MAX_OUTPUT_PIXELS: number; MAX_JOB_ENCODED_PIXELS: number }): PixelBudget {
  const maxOutputPixels = config.MAX_OUTPUT_PIXELS || config.MAX_INPUT_PIXELS;
  return { maxOutputPixels, maxJobEncodedPixels: config.MAX_JOB_ENCODED_PIXELS || 4 * maxOutputPixels };
}

/**
 * The first step of the pipeline that goes over the budget, or null. `source`
 * is the upright size of the source image, or null when it is not known yet.
 */
export function checkPixelBudget(operations: readonly Operation[], source: Size | null, budget: PixelBudget): BudgetProblem | null {
  let size = source;
  let encoded = 0;
  for (const [step, op] of operations.entries()) {
    const { image, outputs } = stepSizes(op, size);
    for (const s of [image, ...outputs]) {
      if (s && pixels(s) > budget.maxOutputPixels) {
        return {
          step,
          code: 'OUTPUT_TOO_LARGE',
          message: `${op.op} would make a ${s.width}×${s.height} image (${pixels(s)} pixels); the limit is ${budget.maxOutputPixels}`,
        };
      }
    }
    encoded += outputs.reduce((sum, s) => sum + (s ? pixels(s) : 0), 0);
    if (encoded > budget.maxJobEncodedPixels) {
      return {
        step,
        code: 'JOB_TOO_LARGE',
        message: `the images stored up to ${op.op} hold ${encoded} pixels together; a job may store at most ${budget.maxJobEncodedPixels}`,
      };
    }
    size = image;
  }
  return null;
}

/** The image after each step (null: not known from what was given). */
export function pipelineSizes(operations: readonly Operation[], source: Size | null): (Size | null)[] {
  let size = source;
  return operations.map((op) => (size = stepSizes(op, size).image));
}

/** The image after a step (null: unknown) and the sizes of the images it stores. */
function stepSizes(op: Operation, size: Size | null): { image: Size | null; outputs: (Size | null)[] } {
  switch (op.op) {
    case 'rotate': {
      const image = size && rotatedSize(size, op.angle);
      return { image, outputs: [image] };
    }
    case 'resize': {
      const image = resizedSize(size, op);
      return { image, outputs: [image] };
    }
    case 'force_resize': {
      const image = { width: op.width, height: op.height };
      return { image, outputs: [image] };
    }
    case 'convert':
    case 'strip':
      return { image: size, outputs: [size] };
    case 'variants': {
      const widths = Object.values(op.sizes ?? DEFAULTS.variantSizes);
      const formats = (op.formats ?? DEFAULTS.variantFormats).length;
      return { image: size, outputs: widths.flatMap((w) => Array<Size | null>(formats).fill(size && scaledTo(size, Math.min(1, w / size.width)))) };
    }
    // placeholder (≤ 64 px), metadata and faces store no full image
    default:
      return { image: size, outputs: [] };
  }
}

/** libvips' rotate: the bounding box of the turned image (exact for multiples of 90, rounded up otherwise). */
export function rotatedSize({ width, height }: Size, angle: number): Size {
  const turn = ((angle % 360) + 360) % 360;
  if (turn % 90 === 0) return turn % 180 === 0 ? { width, height } : { width: height, height: width };
  const r = (turn * Math.PI) / 180;
  const cos = Math.abs(Math.cos(r));
  const sin = Math.abs(Math.sin(r));
  return { width: Math.ceil(width * cos + height * sin), height: Math.ceil(width * sin + height * cos) };
}

/** sharp's resize, as measured: contain always pads to the box; cover and fill clip each side to the source without enlargement. */
function resizedSize(size: Size | null, op: OperationOf<'resize'>): Size | null {
  const { width, height } = op;
  const fit = op.fit ?? DEFAULTS.resizeFit;
  const enlarge = op.withoutEnlargement === false;
  if (width !== undefined && height !== undefined) {
    if (fit === 'contain') return { width, height };
    if (fit === 'cover' || fit === 'fill') {
      if (enlarge) return { width, height };
      return size && { width: Math.min(width, size.width), height: Math.min(height, size.height) };
    }
  }
  if (!size) return null;
  const scales = [width !== undefined ? width / size.width : undefined, height !== undefined ? height / size.height : undefined].filter(
    (s): s is number => s !== undefined,
  );
  const scale = fit === 'outside' ? Math.max(...scales) : Math.min(...scales);
  return scaledTo(size, enlarge ? scale : Math.min(1, scale));
}

function scaledTo(size: Size, scale: number): Size {
  return { width: Math.max(1, Math.round(size.width * scale)), height: Math.max(1, Math.round(size.height * scale)) };
}

function pixels(s: Size): number {
  return s.width * s.height;
}
