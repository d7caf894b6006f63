import { Type, type Static } from '@sinclair/typebox';
import type { FieldProblem } from './errors.js';
import { FaceDetector } from './face-presets.js';

/**
 * Processing operations (image-processing queue). Each operation is a tagged
 * object; a job carries an ordered list of them (a pipeline). Limits that
 * depend on configuration (maximum width, …) are checked by the API against
 * its config; the schema holds the absolute bounds.
 */
export const MAX_DIMENSION = 16384;

const Dimension = Type.Integer({ minimum: 1, maximum: MAX_DIMENSION });

export const ResizeOp = Type.Object(
  {
    op: Type.Literal('resize'),
    width: Type.Optional(Dimension),
    height: Type.Optional(Dimension),
    fit: Type.Optional(
      Type.Union([Type.Literal('cover'), Type.Literal('contain'), Type.Literal('inside'), Type.Literal('outside'), Type.Literal('fill')], {
        default: 'inside',
      }),
    ),
    withoutEnlargement: Type.Optional(Type.Boolean({ default: true })),
    background: Type.Optional(
      Type.String({ pattern: '^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$', description: 'padding colour for fit=contain, #rrggbb or #rrggbbaa' }),
    ),
  },
  { additionalProperties: false, description: 'Resize keeping the aspect ratio (fit decides how). At least one of width/height.' },
);
export type ResizeOp = Static<typeof ResizeOp>;

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
const OPERATIONS = [ResizeOp, FacesOp] as const;
export type Operation = Static<(typeof OPERATIONS)[number]>;
export const Operation = Type.Unsafe<Operation>({ type: 'object', oneOf: [...OPERATIONS], discriminator: { propertyName: 'op' } });

export const OPERATION_NAMES = ['resize', 'faces'] as const;
export type OperationName = (typeof OPERATION_NAMES)[number];

export const Operations = Type.Array(Operation, { minItems: 1, maxItems: 20 });

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
  operations.forEach((op, i) => {
    const at = `operations/${i}`;
    if (op.op === 'resize') {
      if (op.width === undefined && op.height === undefined) problems.push({ path: at, message: 'resize needs width, height or both' });
      for (const field of ['width', 'height'] as const) {
        const value = op[field];
        if (value !== undefined && value > limits.maxDimension) problems.push({ path: `${at}/${field}`, message: `must be <= ${limits.maxDimension}` });
      }
    }
  });
  return problems;
}
