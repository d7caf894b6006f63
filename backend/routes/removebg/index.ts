import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import colorNames from 'color-name';
import { findVendorByApiKey } from '../../../db/repos/vendors.js';
import { findVendorJob, readJobResults } from '../../../db/repos/jobs.js';
import type { Job } from '../../../db/schema.js';
import { checkRemoveBgOptions } from '../../../jobs/cutout-options.js';
import { AppError, ERROR_CODES, isErrorCode } from '../../../jobs/errors.js';
import type { JobOutput, JobSource, RemoveBgOptions } from '../../../jobs/payloads.js';
import { hashApiKey, looksLikeApiKey } from '../../../platform/api-keys.js';
import { newId } from '../../../platform/ids.js';
import { assertQueueable, planJobs } from '../../enqueue.js';
import { watchJob } from '../../job-watch.js';
import { toAuthVendor, vendorOf, type AuthVendor } from '../../plugins/auth.js';
import { toErrorBody } from '../../plugins/errors.js';
import { checkSourceUrl } from '../image-queue/enqueue-routes.js';
import { inspectUpload, multipartReader, storeUploads, type Upload, type UploadLimits } from '../image-queue/uploads.js';
import { removeBgJobSchema, removeBgSchema, type RemoveBgBody, type RemoveBgErrors } from './schemas.js';

/**
 * remove.bg's API on this service: `POST /v1.0/removebg` with the vendor's
 * API key as `X-Api-Key`, answered with the image. Underneath it is an
 * ordinary background-removal job (same queue, ledger, rate-limit tier and
 * fair ordering as POST /api/image-queue/remove-bg-queue, so it shows in job
 * lists, stats and metrics) that the request waits for through the vendor's
 * job events. A job that takes longer than SYNC_WAIT_MS is answered 202 with
 * a Location to GET for the result. Errors are remove.bg's
 * `{ errors: [{ title, code, detail }] }` with remove.bg's status codes.
 */
export interface RemoveBgRouteOptions {
  attempts: number;
  syncWaitMs: number;
  maxInputPixels: number;
  vendorCacheMs: number;
  allowPrivateSourceUrls: boolean;
  allowedPrivateHosts: readonly string[];
  uploads: UploadLimits;
}

/** The project every remove.bg job is filed under (remove.bg has no projects); each request is its own record. */
export const REMOVEBG_PROJECT = 'removebg';

/** remove.bg's size names, in pixels; `full` is remove.bg's 25 megapixels, and never more than this server accepts. */
const PREVIEW_PIXELS = 250_000;
const SIZE_PIXELS: Record<string, number> = {
  preview: PREVIEW_PIXELS,
  small: PREVIEW_PIXELS,
  regular: PREVIEW_PIXELS,
  medium: 1_500_000,
  hd: 4_000_000,
  full: 25_000_000,
  '4k': 25_000_000,
  auto: 25_000_000,
};

const CONTENT_TYPE: Record<string, string> = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp', zip: 'application/zip' };

const routes: FastifyPluginAsyncTypebox<RemoveBgRouteOptions> = async (app, opts) => {
  await app.register(multipart, { throwFileSizeLimit: true });
  // remove.bg takes form-urlencoded bodies too (image_file_b64 in a form can be as large as the file it encodes).
  const bodyLimit = Math.ceil((opts.uploads.maxFileBytes * 4) / 3) + 64 * 1024;
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  const keys = new Map<string, { vendor: AuthVendor | null; at: number }>();
  // A rotated key or a deleted vendor stops working at once here too, not after the key cache's period.
  const unlisten = app.eventHub.onRevoke((vendorId) => {
    for (const [hash, entry] of keys) if (entry.vendor?.id === vendorId) keys.delete(hash);
  });
  const offGap = app.eventHub.onGap(() => keys.clear());
  app.addHook('onClose', async () => {
    unlisten();
    offGap();
  });
  app.addHook('onRequest', async (request) => {
    const key = request.headers['x-api-key'];
    if (typeof key !== 'string' || key === '') throw new RemoveBgError(403, 'auth_failed', 'Missing API Key', 'send your API key in the X-Api-Key header');
    const vendor = await vendorOfKey(app, keys, key, opts.vendorCacheMs);
    if (!vendor) throw new RemoveBgError(403, 'auth_failed', 'Invalid API Key');
    request.caller = { vendor, scopes: null, projectId: null };
    (request.log as { setBindings?: (bindings: object) => void }).setBindings?.({ vendorId: vendor.id });
  });
  app.setErrorHandler((error: FastifyError, request, reply) => sendError(request, reply, error));

  app.post('/removebg', {
    schema: removeBgSchema,
    bodyLimit,
    // 'public' to the bearer-token hook: remove.bg's X-Api-Key is checked by this plugin's own onRequest hook, which sets request.caller.
    config: { auth: 'public', rateLimitTier: 'backgroundRemoval' },
    preValidation: multipartReader({ fileField: 'image_file', base64Field: 'image_file_b64', arrayFields: [], jsonFields: [] }, opts.uploads),
    handler: async (request, reply) => {
      const body = (request.body ?? {}) as RemoveBgBody;
      const options = jobOptions(body, opts.maxInputPixels);
      const upload = await sourceUpload(request, body, opts);
      if (body.image_url) checkSourceUrl(body.image_url, 'body/image_url', opts);
      if (body.bg_image_url) checkSourceUrl(body.bg_image_url, 'body/bg_image_url', opts);
      assertQueueable(app);
      const vendorId = vendorOf(request).id;
      const source: JobSource = upload
        ? ((await storeUploads(app, vendorId, REMOVEBG_PROJECT, [upload]))[0] as JobSource)
        : { type: 'url', url: body.image_url as string };
      const plan = planJobs(vendorId, [{ kind: 'remove-bg', projectId: REMOVEBG_PROJECT, recordId: newId(), source, options }], {
        attempts: opts.attempts,
        batch: false,
      });
      const jobId = plan.jobIds[0] as string;
      // Watching starts before the commit, so the job's end cannot slip past.
      const watch = await watchJob(app, vendorId, jobId);
      try {
        await app.enqueuer.commit(plan);
        const job = await watch.until(opts.syncWaitMs, closedSignal(reply));
        return await answer(app, request, reply, job ?? { id: jobId, status: 'queued' }, { typeLevel: body.type_level });
      } finally {
        watch.close();
      }
    },
  });

  app.get('/removebg/jobs/:jobId', { schema: removeBgJobSchema, config: { auth: 'public', rateLimitTier: 'polling' } }, async (request, reply) => {
    const vendorId = vendorOf(request).id;
    const found = await findVendorJob(app.db, vendorId, request.params.jobId);
    if (!found || found.kind !== 'remove-bg') throw new RemoveBgError(404, 'not_found', 'No such job');
    if (FINAL_STATES.has(found.status)) return answer(app, request, reply, found, {});
    const watch = await watchJob(app, vendorId, found.id);
    try {
      return await answer(app, request, reply, (await watch.until(opts.syncWaitMs, closedSignal(reply))) ?? found, {});
    } finally {
      watch.close();
    }
  });
};

const FINAL_STATES = new Set(['completed', 'failed', 'dead']);

export default routes;

/** A refusal in remove.bg's terms. */
export class RemoveBgError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    readonly title: string,
    readonly detail?: string,
  ) {
    super(detail ? `${title}: ${detail}` : title);
    this.name = 'RemoveBgError';
  }
}

async function vendorOfKey(app: FastifyInstance, cache: Map<string, { vendor: AuthVendor | null; at: number }>, key: string, ttlMs: number) {
  if (!looksLikeApiKey(key)) return null;
  const hash = hashApiKey(key);
  const hit = cache.get(hash);
  if (hit && Date.now() - hit.at < ttlMs) return hit.vendor;
  const row = await findVendorByApiKey(app.db, key);
  const vendor = row ? toAuthVendor(row) : null;
  if (ttlMs > 0) {
    if (cache.size > 10_000) cache.clear();
    cache.set(hash, { vendor, at: Date.now() });
  }
  return vendor;
}

/** remove.bg's parameters as the job's options (the contract in jobs/payloads.ts). */
function jobOptions(body: RemoveBgBody, maxInputPixels: number): RemoveBgOptions {
  if (body.bg_color && body.bg_image_url) {
    throw new RemoveBgError(
      400,
      'multiple_bg_sources',
      'Multiple background sources given',
      'Please provide either the bg_color or the bg_image_url parameter.',
    );
  }
  const background = body.bg_color ? hexColour(body.bg_color) : undefined;
  if (body.bg_color && !background)
    throw new RemoveBgError(400, 'invalid_bg_color', 'Invalid bg_color parameter given', 'a hex code (81d4fa, fff, 81d4fa77) or a colour name');
  const channels = body.channels ?? 'rgba';
  const opaque = body.bg_image_url !== undefined || (background !== undefined && background.length === 7);
  const format =
    body.format === 'jpg' ? 'jpeg' : body.format === 'zip' ? 'zip' : body.format === 'png' ? 'png' : channels === 'alpha' || !opaque ? 'png' : 'jpeg';
  const options: RemoveBgOptions = {
    format,
    maxPixels: Math.min(SIZE_PIXELS[body.size ?? 'preview'] ?? PREVIEW_PIXELS, maxInputPixels),
    subject: body.type ?? 'auto',
    ...(background ? { background } : {}),
    ...(body.bg_image_url ? { backgroundImageUrl: body.bg_image_url } : {}),
    ...(channels === 'alpha' ? { channels } : {}),
    ...(body.crop ? { crop: true } : {}),
    ...(body.crop_margin !== undefined ? { cropMargin: body.crop_margin } : {}),
    ...(body.scale !== undefined && body.scale !== 'original' ? { scale: body.scale } : {}),
    ...(body.position !== undefined && body.position !== 'original' ? { position: body.position } : {}),
    ...(body.roi !== undefined ? { roi: body.roi } : {}),
  };
  const problem = checkRemoveBgOptions(options)[0];
  if (problem) {
    const field = OPTION_FIELDS[problem.path] ?? problem.path;
    throw new RemoveBgError(400, `invalid_${field}`, `Invalid ${field} parameter given`, problem.message);
  }
  return options;
}

const OPTION_FIELDS: Record<string, string> = {
  cropMargin: 'crop_margin',
  scale: 'scale',
  position: 'position',
  roi: 'roi',
  backgroundImageUrl: 'bg_image_url',
};

/** The uploaded or base64 photo, checked like every upload; null when the photo is a URL. Exactly one source. */
async function sourceUpload(request: FastifyRequest, body: RemoveBgBody, opts: RemoveBgRouteOptions): Promise<Upload | null> {
  const given = [body.image_file, body.image_file_b64, body.image_url].filter((v) => v !== undefined && v !== '').length;
  if (given === 0) {
    throw new RemoveBgError(
      400,
      'missing_source',
      'No image given',
      'Please provide the source image in the image_url, image_file or image_file_b64 parameter.',
    );
  }
  if (given > 1) {
    throw new RemoveBgError(
      400,
      'multiple_sources',
      'Multiple image sources given',
      'Please provide either the image_url, image_file or image_file_b64 parameter.',
    );
  }
  if (body.image_file) return request.uploads[0] ?? null;
  if (!body.image_file_b64) return null;
  const bytes = Buffer.from(body.image_file_b64.replace(/^data:[^,]*,/, ''), 'base64');
  if (bytes.length === 0)
    throw new RemoveBgError(400, 'failed_to_read_image', 'There was an error reading the image.', 'image_file_b64 is not base64 image data');
  if (bytes.length > opts.uploads.maxFileBytes) {
    throw new RemoveBgError(400, 'file_too_large', 'File too large', `File exceeds limit of ${opts.uploads.maxFileBytes} bytes`);
  }
  return inspectUpload(bytes, 'image_file_b64', 'image', 'body/image_file_b64', opts.uploads.maxPixels);
}

/** #rrggbb or #rrggbbaa from remove.bg's forms: 3, 4, 6 or 8 hex digits (with or without #), or a CSS colour name. */
export function hexColour(value: string): string | undefined {
  const text = value.trim().toLowerCase();
  const hex = /^#?([0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})$/.exec(text)?.[1];
  if (hex) return `#${hex.length <= 4 ? [...hex].map((c) => c + c).join('') : hex}`;
  const rgb = Object.hasOwn(colorNames, text) ? colorNames[text] : undefined;
  return rgb ? `#${rgb.map((v) => v.toString(16).padStart(2, '0')).join('')}` : undefined;
}

/** The job's outcome as remove.bg answers it: the image, 202 while it is not done, or its error. */
async function answer(
  app: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
  job: Pick<Job, 'id' | 'status'> & Partial<Pick<Job, 'error_code' | 'error_message' | 'options'>>,
  meta: { typeLevel?: string | undefined },
): Promise<FastifyReply> {
  void reply.header('x-credits-charged', '0').header('x-job-id', job.id);
  if (job.status === 'failed' || job.status === 'dead') throw jobError(job.error_code ?? 'INTERNAL', job.error_message ?? 'the job failed');
  const statusUrl = `/v1.0/removebg/jobs/${job.id}`;
  if (job.status !== 'completed') {
    return reply
      .code(202)
      .header('location', statusUrl)
      .send({ data: { jobId: job.id, state: job.status, statusUrl } });
  }
  const result = (await readJobResults(app.db, [job.id])).get(job.id) as { outputs?: JobOutput[]; width?: number; height?: number } | undefined;
  const output = result?.outputs?.[0];
  if (!output) throw new AppError('INTERNAL', `job ${job.id} completed without an output`);
  const bytes = await app.storage.get({ key: output.key, url: output.url });
  const subject = subjectOf(job.options);
  void reply.header('x-width', String(output.width)).header('x-height', String(output.height)).header('x-credits-charged', '1');
  if (meta.typeLevel !== 'none') void reply.header('x-type', subject === 'auto' ? 'other' : subject);
  if (request.headers.accept?.includes('application/json')) return reply.code(200).send({ data: { result_b64: bytes.toString('base64') } });
  return reply
    .code(200)
    .type(CONTENT_TYPE[output.format] ?? 'application/octet-stream')
    .send(bytes);
}

function subjectOf(options: string | undefined): string {
  try {
    return (JSON.parse(options ?? '{}') as RemoveBgOptions).subject ?? 'auto';
  } catch {
    return 'auto';
  }
}

/** A failed job in remove.bg's terms: the photo's problems are 400s, the service's are 5xx. */
function jobError(code: string, message: string): RemoveBgError {
  const background = message.startsWith('background image');
  switch (code) {
    case 'SOURCE_NOT_FOUND':
    case 'SOURCE_FETCH_FAILED':
    case 'SOURCE_TIMEOUT':
    case 'SOURCE_TOO_LARGE':
    case 'SOURCE_URL_INVALID':
    case 'SOURCE_URL_FORBIDDEN':
      return background
        ? new RemoveBgError(400, 'failed_bg_download', 'Failed to download background image from given bg_image_url', message)
        : new RemoveBgError(400, 'failed_image_download', 'Failed to download image from given image_url', message);
    case 'BAD_IMAGE':
      return new RemoveBgError(400, background ? 'failed_bg_download' : 'failed_to_read_image', 'There was an error reading the image.', message);
    case 'UNSUPPORTED_FORMAT':
      return new RemoveBgError(400, 'invalid_file_type', 'Invalid file type', message);
    case 'TOO_MANY_PIXELS':
      return new RemoveBgError(400, 'resolution_too_high', 'Image resolution too high', message);
    case 'NO_FOREGROUND':
      return new RemoveBgError(400, 'unknown_foreground', 'Could not identify foreground in image.', message);
    case 'BAD_REQUEST':
      if (/^roi exceeds/.test(message)) return new RemoveBgError(400, 'roi_exceeds_bounds', 'ROI exceeds image bounds', message);
      if (/^roi defines an empty/.test(message)) return new RemoveBgError(400, 'roi_region_empty', 'ROI region is empty', message);
      return new RemoveBgError(400, 'invalid_parameters', 'Invalid parameters', message);
    default: {
      const status = isErrorCode(code) ? ERROR_CODES[code].status : 500;
      return new RemoveBgError(status >= 500 ? status : 500, 'processing_failed', 'The image could not be processed', `${code}: ${message}`);
    }
  }
}

/** Every error of these routes, as remove.bg writes them. */
function sendError(request: FastifyRequest, reply: FastifyReply, error: FastifyError): FastifyReply {
  const refusal = error instanceof RemoveBgError ? error : translate(error);
  if (refusal.statusCode >= 500) request.log.error({ err: error, code: refusal.code }, 'request failed');
  else request.log.info({ code: refusal.code, statusCode: refusal.statusCode, msg: refusal.message }, 'request refused');
  if (refusal.statusCode === 503 && !reply.hasHeader('retry-after')) void reply.header('retry-after', '5');
  if (!reply.hasHeader('x-credits-charged')) void reply.header('x-credits-charged', '0');
  const body: RemoveBgErrors = {
    errors: [{ title: refusal.title, code: refusal.code, ...(refusal.detail ? { detail: refusal.detail } : {}) }],
    requestId: request.id,
  };
  return reply.code(refusal.statusCode).type('application/json').send(body);
}

/** The API's own errors (validation, limits, uploads, outages) in remove.bg's codes. */
function translate(error: FastifyError): RemoveBgError {
  const base = toErrorBody(error);
  const field = base.fields?.[0];
  const name = field?.path.replace(/^body\//, '').split('/')[0] ?? '';
  switch (base.code) {
    case 'UNAUTHORIZED':
    case 'FORBIDDEN':
      return new RemoveBgError(403, 'auth_failed', 'Authentication failed', base.message);
    case 'RATE_LIMITED':
      return new RemoveBgError(429, 'rate_limit_exceeded', 'Rate limit exceeded', base.message);
    case 'PAYLOAD_TOO_LARGE':
      return new RemoveBgError(400, 'file_too_large', 'File too large', base.message);
    case 'UNSUPPORTED_MEDIA_TYPE':
      return new RemoveBgError(400, 'invalid_file_type', 'Invalid file type', base.message);
    case 'TOO_MANY_PIXELS':
      return new RemoveBgError(400, 'resolution_too_high', 'Image resolution too high', base.message);
    case 'SOURCE_URL_INVALID':
    case 'SOURCE_URL_FORBIDDEN':
      return new RemoveBgError(400, `invalid_${name || 'image_url'}`, `Invalid ${name || 'image_url'}: Please provide a valid URL.`, base.message);
    case 'BAD_REQUEST':
      if (field?.message === 'is not an allowed field') return new RemoveBgError(400, 'unknown_parameter', `Unknown parameter ${name}`, base.message);
      return name
        ? new RemoveBgError(400, `invalid_${name}`, `Invalid value for parameter '${name}'`, base.message)
        : new RemoveBgError(400, 'invalid_parameters', 'Invalid parameters', base.message);
    case 'NOT_FOUND':
      return new RemoveBgError(404, 'not_found', 'Not found', base.message);
    default:
      return base.statusCode >= 500
        ? new RemoveBgError(base.statusCode, base.statusCode === 503 ? 'service_unavailable' : 'internal_error', base.error, base.message)
        : new RemoveBgError(base.statusCode, 'invalid_parameters', base.error, base.message);
  }
}

/** Aborted when the client goes away, so a wait for it ends. */
function closedSignal(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => controller.abort());
  return controller.signal;
}
