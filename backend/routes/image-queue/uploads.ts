import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { MultipartFile, MultipartValue } from '@fastify/multipart';
import { fileTypeFromBuffer } from 'file-type';
import sharp from 'sharp';
import { AppError } from '../../../jobs/errors.js';
import type { JobSource } from '../../../jobs/payloads.js';
import { newId, randomToken } from '../../../platform/ids.js';
import { EXTENSIONS, keySegment } from '../../../platform/storage/index.js';
import { badFields } from '../../plugins/errors.js';
import type { Size } from '../../../jobs/pixel-budget.js';

/**
 * Photos uploaded with multipart/form-data instead of a `photoUrl`. A
 * preValidation hook reads the parts into a body object (files become
 * `sha256:<hex>` references, their bytes kept on the request) so the route's
 * multipart schema validates the fields and the idempotency fingerprint
 * covers the file contents. The type is sniffed from the bytes, never taken
 * from the file name or the part's Content-Type: jpeg, png, webp, avif, and
 * heic/heif only where this server's sharp can decode it; anything else is
 * 415. The pixel count is read from the header and checked as for URLs. The
 * handler stores the files through the storage layer before the jobs are
 * committed, and the jobs carry `{ type: 'stored', key, url }`.
 */
export interface Upload {
  field: string;
  filename: string;
  mime: string;
  ext: string;
  bytes: Buffer;
  sha256: string;
  /** the image's size as shown (EXIF orientation applied), for the pipeline's pixel budget */
  size: Size;
}

declare module 'fastify' {
  interface FastifyRequest {
    uploads: Upload[];
  }
}

export interface UploadLimits {
  maxFileBytes: number;
  maxFiles: number;
  maxTotalBytes: number;
  maxPixels: number;
}

export interface MultipartShape {
  /** the file field: `photo` (one) or `photos` (many, in order); remove.bg's route names it `image_file` */
  fileField: 'photo' | 'photos' | 'image_file';
  /** a field may carry the photo base64-encoded (remove.bg's image_file_b64), so fields may be as large as an encoded file */
  base64Field?: string;
  /** fields that may repeat, collected in order (a JSON array in one field also works) */
  arrayFields: readonly string[];
  /** fields sent as JSON text */
  jsonFields: readonly string[];
}

/** The types an upload may have, with the extension it is stored under. */
const ACCEPTED: Record<string, string> = Object.fromEntries(
  ['image/jpeg', 'image/png', 'image/webp', 'image/avif', 'image/heic', 'image/heif'].map((type) => [type, EXTENSIONS[type] as string]),
);

/** sharp's prebuilt libvips reads AV1 HEIF (avif) only; a build with libde265 also lists .heic. */
const SHARP_READS_HEIC = sharp.format.heif.input.fileSuffix?.includes('.heic') ?? false;

/**
 * What one route's form may hold, derived from its shape: a single route
 * reads one file and refuses a second as soon as its header arrives; fields
 * are the route's own few (bulk adds one `recordIds` field per photo), each
 * at most `fieldBytes`; `totalBytes` is a running total over fields and
 * files, checked as bytes arrive. Beyond any of them the request is a 413
 * (400 for a second photo) without the rest of the body being kept.
 */
export interface FormLimits {
  files: number;
  fields: number;
  fieldBytes: number;
  totalBytes: number;
}

/** The named fields a route's form may have besides the files (recordId, projectId, operations, remove.bg's options …); room to spare. */
const NAMED_FIELDS = 32;
/** Largest field of a single route: operations JSON at MAX_OPERATIONS is a few KiB. */
const SINGLE_FIELD_BYTES = 64 * 1024;

export function formLimits(shape: MultipartShape, limits: UploadLimits): FormLimits {
  if (shape.base64Field) {
    const fieldBytes = Math.ceil((limits.maxFileBytes * 4) / 3) + SINGLE_FIELD_BYTES;
    return { files: 1, fields: NAMED_FIELDS, fieldBytes, totalBytes: fieldBytes + NAMED_FIELDS * SINGLE_FIELD_BYTES };
  }
  if (shape.fileField !== 'photos') {
    return { files: 1, fields: NAMED_FIELDS, fieldBytes: SINGLE_FIELD_BYTES, totalBytes: limits.maxFileBytes + NAMED_FIELDS * SINGLE_FIELD_BYTES };
  }
  // recordIds as one JSON array field: up to 191 characters (4 bytes each in UTF-8) per photo
  const fieldBytes = Math.max(SINGLE_FIELD_BYTES, limits.maxFiles * 800);
  return { files: limits.maxFiles, fields: NAMED_FIELDS + limits.maxFiles, fieldBytes, totalBytes: limits.maxTotalBytes };
}

export function multipartReader(shape: MultipartShape, limits: UploadLimits) {
  const form = formLimits(shape, limits);
  return async function readMultipart(request: FastifyRequest): Promise<void> {
    request.uploads = [];
    if (request.mediaType !== 'multipart/form-data') return;
    const body: Record<string, unknown> = {};
    const files: string[] = [];
    const budget = { left: form.totalBytes, total: form.totalBytes };
    const parts = request.parts({
      limits: {
        fileSize: limits.maxFileBytes,
        files: form.files,
        fields: form.fields,
        fieldSize: form.fieldBytes,
        fieldNameSize: 100,
        parts: form.files + form.fields,
        headerPairs: 20,
      },
    });
    try {
      for await (const part of parts) {
        if (part.type === 'file') {
          const upload = await readFile(part as MultipartFile, shape, files.length, limits, budget);
          request.uploads.push(upload);
          files.push(`sha256:${upload.sha256}`);
        } else {
          const field = part as MultipartValue<unknown>;
          if (field.valueTruncated || field.fieldnameTruncated) {
            throw new AppError('PAYLOAD_TOO_LARGE', `form field ${field.fieldname.slice(0, 100)} is larger than ${form.fieldBytes} bytes`, {
              details: { fields: [{ path: `body/${field.fieldname.slice(0, 100)}`, message: `must be at most ${form.fieldBytes} bytes` }] },
            });
          }
          spend(budget, Buffer.byteLength(String(field.value ?? '')) + Buffer.byteLength(field.fieldname));
          addField(body, field, shape);
        }
      }
    } catch (error) {
      throw formLimitError(error, shape, form) ?? malformedMultipart(error);
    }
    if (files.length > 0) body[shape.fileField] = shape.fileField === 'photos' ? files : files[0];
    request.body = body;
  };
}

interface Budget {
  left: number;
  total: number;
}

function spend(budget: Budget, bytes: number): void {
  budget.left -= bytes;
  if (budget.left < 0) throw new AppError('PAYLOAD_TOO_LARGE', `the form is larger than ${budget.total} bytes in total (fields and files)`);
}

/** busboy's count limits, as the client should read them. */
function formLimitError(error: unknown, shape: MultipartShape, form: FormLimits): AppError | undefined {
  switch ((error as { code?: string })?.code) {
    case 'FST_FILES_LIMIT':
      return shape.fileField !== 'photos'
        ? badFields([{ path: `body/${shape.fileField}`, message: 'must be one file' }])
        : new AppError('PAYLOAD_TOO_LARGE', `the form has more than ${form.files} photos`, {
            details: { fields: [{ path: 'body/photos', message: `must have at most ${form.files} files` }] },
          });
    case 'FST_FIELDS_LIMIT':
      return new AppError('PAYLOAD_TOO_LARGE', `the form has more than ${form.fields} fields`);
    case 'FST_PARTS_LIMIT':
      return new AppError('PAYLOAD_TOO_LARGE', `the form has more than ${form.files + form.fields} parts`);
    default:
      return undefined;
  }
}

async function readFile(part: MultipartFile, shape: MultipartShape, index: number, limits: UploadLimits, budget: Budget): Promise<Upload> {
  const path = shape.fileField === 'photos' ? `body/photos/${index}` : `body/${shape.fileField}`;
  if (part.fieldname !== shape.fileField) {
    part.file.resume();
    throw badFields([{ path: `body/${part.fieldname}`, message: `is not a file field; send the photo as file field "${shape.fileField}"` }]);
  }
  let bytes: Buffer;
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of part.file as AsyncIterable<Buffer>) {
      spend(budget, chunk.length);
      chunks.push(chunk);
    }
    // busboy stops a file at fileSize and marks it truncated rather than failing the stream
    if ((part.file as { truncated?: boolean }).truncated) throw Object.assign(new Error('file too large'), { code: 'FST_REQ_FILE_TOO_LARGE' });
    bytes = Buffer.concat(chunks);
  } catch (error) {
    if ((error as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') {
      throw new AppError('PAYLOAD_TOO_LARGE', `${path} is larger than ${limits.maxFileBytes} bytes`, {
        details: { fields: [{ path, message: 'is too large' }] },
      });
    }
    throw error;
  }
  return inspectUpload(bytes, part.fieldname, part.filename, path, limits.maxPixels);
}

/**
 * An upload's bytes checked as every upload is: the type sniffed from the
 * bytes (415 unless accepted), the header readable and within the pixel
 * limit (413). `path` names the field in errors.
 */
export async function inspectUpload(bytes: Buffer, field: string, filename: string, path: string, maxPixels: number): Promise<Upload> {
  const sniffed = await fileTypeFromBuffer(bytes);
  const ext = sniffed ? ACCEPTED[sniffed.mime] : undefined;
  if (!sniffed || !ext || ((ext === 'heic' || ext === 'heif') && !SHARP_READS_HEIC)) {
    const what = sniffed ? `${sniffed.mime}` : 'not an image type this server recognises';
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `${path} is ${what}; accepted: jpeg, png, webp, avif${SHARP_READS_HEIC ? ', heic' : ''}`, {
      details: { fields: [{ path, message: `is ${what}` }] },
    });
  }
  const size = await checkHeader(bytes, path, maxPixels);
  return { field, filename, mime: sniffed.mime, ext, bytes, sha256: createHash('sha256').update(bytes).digest('hex'), size };
}

/** The header must parse and the pixel count be within the limit: caught here rather than by a worker later. Returns the upright size. */
async function checkHeader(bytes: Buffer, path: string, maxPixels: number): Promise<Size> {
  const meta = await sharp(bytes, { limitInputPixels: false })
    .metadata()
    .catch(() => {
      throw new AppError('UNSUPPORTED_MEDIA_TYPE', `${path} could not be read as an image`, {
        details: { fields: [{ path, message: 'is not a readable image' }] },
      });
    });
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (width < 1 || height < 1)
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `${path} has no dimensions`, { details: { fields: [{ path, message: 'has no dimensions' }] } });
  if (width * height > maxPixels) {
    throw new AppError('TOO_MANY_PIXELS', `${path} is ${width}×${height} (${width * height} pixels); the limit is ${maxPixels}`, {
      details: { fields: [{ path, message: 'has too many pixels' }] },
    });
  }
  return (meta.orientation ?? 1) >= 5 ? { width: height, height: width } : { width, height };
}

/**
 * The parser's own complaints (no boundary, a body cut short, a broken part
 * header) carry no status: they are the client's malformed body, a 400, not
 * a 500. Limits (413) and our own refusals pass through.
 */
function malformedMultipart(error: unknown): unknown {
  if (error instanceof AppError || typeof (error as { statusCode?: unknown })?.statusCode === 'number') return error;
  const message = (error as Error)?.message ?? String(error);
  return new AppError('BAD_REQUEST', `the multipart/form-data body could not be read: ${message.slice(0, 200)}`, { cause: error });
}

function addField(body: Record<string, unknown>, part: MultipartValue<unknown>, shape: MultipartShape): void {
  const name = part.fieldname;
  const raw = String(part.value ?? '');
  let value: unknown = raw;
  if (shape.jsonFields.includes(name) || (shape.arrayFields.includes(name) && raw.trimStart().startsWith('['))) {
    try {
      value = JSON.parse(raw);
    } catch {
      throw badFields([{ path: `body/${name}`, message: 'must be JSON' }]);
    }
  }
  if (shape.arrayFields.includes(name)) {
    const list = (body[name] as unknown[] | undefined) ?? [];
    body[name] = list.concat(Array.isArray(value) ? value : [value]);
    return;
  }
  if (Object.hasOwn(body, name)) throw badFields([{ path: `body/${name}`, message: 'is given more than once' }]);
  body[name] = value;
}

/**
 * Writes the uploads through the storage layer, in parallel, and returns
 * their job sources in upload order. Keys are ours (vendor, project, a fresh
 * id and a random part), never the file name.
 */
export async function storeUploads(app: FastifyInstance, vendorId: string, projectId: string, uploads: readonly Upload[]): Promise<JobSource[]> {
  return Promise.all(
    uploads.map(async (upload) => {
      const key = `${vendorId}/${keySegment(projectId)}/uploads/${newId()}-${randomToken(12)}.${upload.ext}`;
      const stored = await app.storage.put(key, upload.bytes, upload.mime);
      return { type: 'stored' as const, key: stored.key, url: stored.url };
    }),
  );
}
