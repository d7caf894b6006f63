import type { FieldProblem } from './errors.js';

/**
 * The geometry options of a background removal, in remove.bg's own notation
 * (`crop_margin`, `scale`, `position`, `roi`), so that the remove.bg-compatible
 * route passes them through unchanged and the async routes take the same
 * strings. Pure parsing: the API checks them at enqueue (400 naming the
 * field), the worker applies them.
 *
 * - length: `30px`, `10%` or a bare number (pixels)
 * - cropMargin: 1, 2 or 4 lengths (all sides; top/bottom left/right; top right bottom left)
 * - scale: `original` or `10%` … `100%` (of the canvas)
 * - position: `original`, `center`, `X%` (both axes) or `X% Y%`, 0–100 %
 * - roi: `x1 y1 x2 y2`, each a length (% of the width for x, of the height for y)
 */
export interface Length {
  value: number;
  unit: 'px' | '%';
}

/** Top, right, bottom, left (CSS order). */
export type Margin = [Length, Length, Length, Length];

export interface Position {
  /** 0–1 of the free space left of the subject */
  x: number;
  y: number;
}

const LENGTH = '\\d{1,5}(\\.\\d{1,3})?(px|%)?';
/** Syntax only (ranges are checked by checkCutoutOptions); used by the request schemas. */
export const CROP_MARGIN_PATTERN = `^${LENGTH}([ ,]+${LENGTH}){0,3}$`;
export const SCALE_PATTERN = '^(original|\\d{1,3}(\\.\\d{1,3})?%)$';
export const POSITION_PATTERN = '^(original|center|\\d{1,3}(\\.\\d{1,3})?%([ ,]+\\d{1,3}(\\.\\d{1,3})?%)?)$';
export const ROI_PATTERN = `^${LENGTH}([ ,]+${LENGTH}){3}$`;

/** Most margin added on one side: 50 % of the subject's size on that axis, and never more than this many pixels. */
export const MAX_MARGIN_PX = 500;

export function parseLength(text: string): Length | undefined {
  const match = /^(\d+(?:\.\d+)?)(px|%)?$/.exec(text.trim());
  if (!match) return undefined;
  return { value: Number(match[1]), unit: match[2] === '%' ? '%' : 'px' };
}

/** Pixels of a length, `%` taken of `reference`. */
export function resolveLength(length: Length, reference: number): number {
  return Math.round(length.unit === '%' ? (length.value / 100) * reference : length.value);
}

export function parseCropMargin(text: string): Margin | undefined {
  const parts = split(text).map(parseLength);
  if (parts.some((p) => p === undefined)) return undefined;
  const l = parts as Length[];
  switch (l.length) {
    case 1:
      return [l[0]!, l[0]!, l[0]!, l[0]!];
    case 2:
      return [l[0]!, l[1]!, l[0]!, l[1]!];
    case 4:
      return [l[0]!, l[1]!, l[2]!, l[3]!];
    default:
      return undefined;
  }
}

/** The subject's share of the canvas (0.1–1), null for `original`. */
export function parseScale(text: string): number | null | undefined {
  if (text === 'original') return null;
  const match = /^(\d+(?:\.\d+)?)%$/.exec(text.trim());
  const value = match ? Number(match[1]) : NaN;
  return value >= 10 && value <= 100 ? value / 100 : undefined;
}

/** null for `original`. */
export function parsePosition(text: string): Position | null | undefined {
  if (text === 'original') return null;
  if (text === 'center') return { x: 0.5, y: 0.5 };
  const values = split(text).map((p) => /^(\d+(?:\.\d+)?)%$/.exec(p)?.[1]);
  if (values.length < 1 || values.length > 2 || values.some((v) => v === undefined)) return undefined;
  const [x, y = x] = values.map(Number) as [number, number?];
  if (x > 100 || (y as number) > 100) return undefined;
  return { x: x / 100, y: (y as number) / 100 };
}

export function parseRoi(text: string): [Length, Length, Length, Length] | undefined {
  const parts = split(text).map(parseLength);
  if (parts.length !== 4 || parts.some((p) => p === undefined)) return undefined;
  return parts as [Length, Length, Length, Length];
}

/** The ROI as a pixel rectangle of a `width`×`height` image; undefined when it is empty or leaves the image. */
export function roiRect(
  roi: [Length, Length, Length, Length],
  width: number,
  height: number,
): { left: number; top: number; right: number; bottom: number } | 'empty' | 'outside' {
  const [x1, y1, x2, y2] = [resolveLength(roi[0], width), resolveLength(roi[1], height), resolveLength(roi[2], width), resolveLength(roi[3], height)];
  if (x2 > width || y2 > height) return 'outside';
  if (x2 <= x1 || y2 <= y1) return 'empty';
  return { left: x1, top: y1, right: x2, bottom: y2 };
}

export interface CutoutGeometry {
  cropMargin?: string | undefined;
  scale?: string | undefined;
  position?: string | undefined;
  roi?: string | undefined;
}

/** What the patterns cannot say: ranges and the number of values. Paths are relative to the options object. */
export function checkCutoutOptions(options: CutoutGeometry): FieldProblem[] {
  const problems: FieldProblem[] = [];
  if (options.cropMargin !== undefined && !parseCropMargin(options.cropMargin)) {
    problems.push({ path: 'cropMargin', message: 'must be 1, 2 or 4 lengths such as "30px" or "10%"' });
  }
  if (options.scale !== undefined && parseScale(options.scale) === undefined) problems.push({ path: 'scale', message: 'must be "original" or 10% to 100%' });
  if (options.position !== undefined && parsePosition(options.position) === undefined) {
    problems.push({ path: 'position', message: 'must be "original", "center", or one or two values from 0% to 100%' });
  }
  if (options.roi !== undefined) {
    const roi = parseRoi(options.roi);
    if (!roi) problems.push({ path: 'roi', message: 'must be four lengths "x1 y1 x2 y2" (px or %)' });
    else if (roi.some((l) => l.unit === '%' && l.value > 100)) problems.push({ path: 'roi', message: 'percentages must be at most 100%' });
  }
  return problems;
}

/** Everything checkCutoutOptions checks, and one background at most. */
export function checkRemoveBgOptions(options: CutoutGeometry & { background?: string | undefined; backgroundImageUrl?: string | undefined }): FieldProblem[] {
  const problems = checkCutoutOptions(options);
  if (options.background !== undefined && options.backgroundImageUrl !== undefined) {
    problems.push({ path: 'backgroundImageUrl', message: 'cannot be combined with background: give one background' });
  }
  return problems;
}

function split(text: string): string[] {
  return text
    .trim()
    .split(/[ ,]+/)
    .filter((p) => p !== '');
}
