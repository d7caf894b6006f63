import { Type, type Static } from '@sinclair/typebox';
import { CROP_MARGIN_PATTERN, POSITION_PATTERN, ROI_PATTERN, SCALE_PATTERN } from '../../../jobs/cutout-options.js';

/**
 * remove.bg's `POST /v1.0/removebg` request, as its API reference describes it
 * (https://www.remove.bg/api), so that a remove.bg client only changes its
 * base URL. JSON, form-urlencoded and multipart bodies share one set of
 * fields; in multipart the photo may be the file field `image_file`.
 * Parameters remove.bg documents but this service cannot honour
 * (`add_shadow`, `semitransparency`, `shadow_method`) are accepted and
 * ignored, as remove.bg itself ignores them for most subjects.
 */
const str = (description: string, extra: Record<string, unknown> = {}) => Type.Optional(Type.String({ description, ...extra }));
const choice = <T extends string>(values: readonly T[], description: string) =>
  Type.Optional(Type.Unsafe<T>({ type: 'string', enum: [...values], description }));

export const SIZES = ['preview', 'small', 'regular', 'medium', 'hd', 'full', '4k', 'auto'] as const;
export const TYPES = ['auto', 'person', 'product', 'car'] as const;
export const FORMATS = ['auto', 'png', 'jpg', 'zip'] as const;

const fields = {
  image_url: str('source image URL (fetched with the same address rules and limits as every source)', { maxLength: 2048 }),
  image_file_b64: str('source image, base64-encoded'),
  size: choice(
    SIZES,
    'preview (default; also small, regular): up to 0.25 megapixels; medium: 1.5 MP; hd: 4 MP; full, 4k, auto: the original resolution, up to 25 MP and the server limit (MAX_INPUT_PIXELS)',
  ),
  type: choice(TYPES, 'foreground type: every value uses the same model (rembg u2netp by default); the answer repeats it in X-Type (auto answers "other")'),
  type_level: choice(['none', '1', '2', 'latest'] as const, 'none: no X-Type header'),
  format: choice(FORMATS, 'auto (default): png when the result has transparency, else jpg; zip: color.jpg + alpha.png'),
  roi: str('region of interest "x1 y1 x2 y2" in px or %', { pattern: ROI_PATTERN, maxLength: 64 }),
  crop: Type.Optional(Type.Boolean({ description: 'crop off the empty regions (default false)' })),
  crop_margin: str('margin around the cropped subject: 1, 2 or 4 values in px or %', { pattern: CROP_MARGIN_PATTERN, maxLength: 64 }),
  scale: str('"10%" to "100%" of the canvas, or "original" (default)', { pattern: SCALE_PATTERN, maxLength: 16 }),
  position: str('"original", "center", or "X%" / "X% Y%"', { pattern: POSITION_PATTERN, maxLength: 32 }),
  channels: choice(['rgba', 'alpha'] as const, 'rgba (default): the cut-out; alpha: the matte alone'),
  bg_color: str('background colour: hex (81d4fa, fff, 81d4fa77) or a CSS colour name', { maxLength: 32 }),
  bg_image_url: str('background image URL (covers the canvas, centred)', { maxLength: 2048 }),
  add_shadow: Type.Optional(Type.Boolean({ description: 'accepted and ignored' })),
  semitransparency: Type.Optional(Type.Boolean({ description: 'accepted and ignored' })),
  shadow_method: str('accepted and ignored', { maxLength: 16 }),
};

export const RemoveBgJson = Type.Object(fields, { additionalProperties: false });
export const RemoveBgMultipart = Type.Object(
  { ...fields, image_file: Type.Optional(Type.String({ format: 'binary', description: 'source image file' })) },
  { additionalProperties: false, description: 'multipart/form-data: the photo as file field `image_file` (or image_url / image_file_b64)' },
);
export type RemoveBgBody = Static<typeof RemoveBgMultipart>;

/** remove.bg's error body (every error of these routes). */
export const RemoveBgErrors = Type.Object(
  {
    errors: Type.Array(
      Type.Object({
        title: Type.String(),
        code: Type.String({ description: "remove.bg's error code (auth_failed, invalid_size, unknown_foreground, …)" }),
        detail: Type.Optional(Type.String()),
      }),
    ),
    requestId: Type.Optional(Type.String({ description: 'the X-Request-Id of this request' })),
  },
  { title: 'RemoveBgErrors' },
);
export type RemoveBgErrors = Static<typeof RemoveBgErrors>;

/** A wait that ran out: the job goes on, and GET Location answers its result. */
export const RemoveBgAccepted = Type.Object({
  data: Type.Object({
    jobId: Type.String(),
    state: Type.String(),
    statusUrl: Type.String({ description: 'GET with the same X-Api-Key: 200 with the image once done, 202 until then' }),
  }),
});

export const RemoveBgJsonResult = Type.Object({
  data: Type.Object({ result_b64: Type.String({ description: 'the result image (or zip), base64-encoded' }) }),
});

const image = {
  description: 'the result image (image/png, image/jpeg, application/zip); headers X-Width, X-Height, X-Type, X-Credits-Charged',
  headers: {
    'X-Width': { type: 'integer', description: 'width of the result in pixels' },
    'X-Height': { type: 'integer', description: 'height of the result in pixels' },
    'X-Type': { type: 'string', description: 'the foreground type asked for (auto answers "other"); absent with type_level=none' },
    'X-Credits-Charged': { type: 'integer', enum: [0, 1], description: '1 for a delivered result, 0 otherwise' },
  },
  content: {
    'image/png': { schema: { type: 'string', format: 'binary' } },
    'image/jpeg': { schema: { type: 'string', format: 'binary' } },
    'application/zip': { schema: { type: 'string', format: 'binary' } },
    'application/json': { schema: RemoveBgJsonResult },
  },
};

const errors = Object.fromEntries([400, 403, 404, 429, 500, 503].map((s) => [s, RemoveBgErrors]));
const security = [{ removeBgApiKey: [] }];

export const removeBgSchema = {
  tags: ['remove.bg'],
  operationId: 'removeBg',
  summary: 'remove.bg-compatible background removal: answers with the image (a job waited on)',
  description:
    'Send your API key as `X-Api-Key`. The photo goes through the same queue, ledger and limits as POST /api/image-queue/remove-bg-queue (background-removal tier); ' +
    'the answer is the image once the job is done, or 202 with the job when it takes longer than SYNC_WAIT_MS. `Accept: application/json` answers `{ data: { result_b64 } }`.',
  security,
  body: {
    content: {
      'application/json': { schema: RemoveBgJson },
      'application/x-www-form-urlencoded': { schema: RemoveBgJson },
      'multipart/form-data': { schema: RemoveBgMultipart },
    },
  },
  response: { 200: image, 202: RemoveBgAccepted, ...errors },
};

export const RemoveBgJobParams = Type.Object({ jobId: Type.String({ minLength: 1, maxLength: 64 }) });

export const removeBgJobSchema = {
  tags: ['remove.bg'],
  operationId: 'getRemoveBgResult',
  summary: 'The result of a POST /v1.0/removebg that answered 202: the image once done, 202 until then',
  security,
  params: RemoveBgJobParams,
  response: { 200: image, 202: RemoveBgAccepted, ...errors },
};
