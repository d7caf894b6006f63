import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, type FieldProblem } from '../../../jobs/errors.js';
import { checkPixelBudget, type PixelBudget, type Size } from '../../../jobs/pixel-budget.js';
import type { AnyJobKind, JobKind, JobPayload } from '../../../jobs/kinds.js';
import type { JobSource, RemoveBgOptions as RemoveBgOptionsType } from '../../../jobs/payloads.js';
import { checkUrl } from '../../../platform/address-guard.js';
import { assertQueueable, planJobs, type JobSpec, type PlannedJobs } from '../../enqueue.js';
import { estimateTime } from '../../estimate.js';
import { IdempotencyConflictError } from '../../plugins/idempotency.js';
import { badFields } from '../../plugins/errors.js';
import type { ImageQueueOptions } from './index.js';
import { enqueueSchemas, WAIT_MAX_S, type BulkBody, type BulkQueuedResponse, type JobStatusResponse, type QueuedResponse, type SingleBody } from './schemas.js';
import { multipartReader, storeUploads, type MultipartShape } from './uploads.js';
import { rendered, sendRendered, serializerOf } from './conditional.js';
import { assertProject, vendorOf } from '../../plugins/auth.js';

/**
 * The enqueue routes of each job kind (seed 003's six for the registry's
 * three; URLs, schemas and rate tier from jobs/kinds.ts). Each one: vendor check, options and
 * URLs checked, Redis up (else 503 before anything is written), uploads
 * stored, jobs planned, the response built, then ledger rows + the
 * Idempotency-Key committed together and the Bull jobs added; 202.
 */
const SINGLE_SHAPE: MultipartShape = { fileField: 'photo', arrayFields: [], jsonFields: ['operations', 'presetOptions', 'options'] };
const BULK_SHAPE: MultipartShape = { fileField: 'photos', arrayFields: ['recordIds'], jsonFields: ['operations', 'presetOptions', 'options'] };

const routes: FastifyPluginAsyncTypebox<ImageQueueOptions> = async (app, opts) => {
  const estimateSettings = { bullPrefix: opts.bullPrefix, depthCacheMs: opts.statsCacheMs };

  for (const spec of app.jobKinds.list) {
    const schemas = enqueueSchemas(spec);
    // Ledger rows carry the kind as a string; a test's extra kind is one too.
    const route = { kind: spec.kind as JobKind, spec };
    app.post(spec.routes.single.url, {
      schema: schemas.single,
      config: { auth: 'vendor', scopes: ['jobs:write'], rateLimitTier: spec.rateTier },
      preValidation: multipartReader(SINGLE_SHAPE, opts.uploads),
      // The token's project is checked before an Idempotency-Key can replay anything.
      preHandler: [projectGuard, app.idempotency.check],
      handler: async (request, reply) => {
        const body = request.body as SingleBody;
        assertBodyVendor(request, body.vendorId);
        const options = jobOptions(route.spec, body, opts.maxOutputDimension);
        checkBudget(body, options, request.uploads[0] ? [request.uploads[0].size] : [null], opts.pixelBudget);
        checkOptionUrls(options, opts);
        if (body.photoUrl !== undefined) checkSourceUrl(body.photoUrl, 'body/photoUrl', opts);
        assertQueueable(app);
        const source: JobSource = body.photo
          ? ((await storeUploads(app, vendorOf(request).id, body.projectId, request.uploads))[0] as JobSource)
          : { type: 'url', url: body.photoUrl as string };
        const plan = planJobs(vendorOf(request).id, [{ kind: route.kind, projectId: body.projectId, recordId: body.recordId, source, options }], {
          attempts: opts.attempts,
          batch: false,
        });
        const jobId = plan.jobIds[0] as string;
        const response: QueuedResponse = {
          success: true,
          jobId,
          recordId: body.recordId,
          statusUrl: `/api/image-queue/job/${jobId}`,
          message: 'Job queued for processing',
          estimatedTime: await estimateTime(app, estimateSettings, route.kind, 1),
        };
        await commit(app, request, plan, response);
        if (reply.sent) return reply;
        const finished = await waitPreferred(app, request, reply, jobId);
        return finished ?? reply.code(202).send(response);
      },
    });

    app.post(spec.routes.bulk.url, {
      schema: schemas.bulk,
      bodyLimit: opts.bulkBodyLimit,
      config: { auth: 'vendor', scopes: ['jobs:write'], rateLimitTier: 'bulk' },
      preValidation: multipartReader(BULK_SHAPE, opts.uploads),
      // The token's project is checked before an Idempotency-Key can replay anything.
      preHandler: [projectGuard, app.idempotency.check],
      handler: async (request, reply) => {
        const body = request.body as BulkBody;
        assertBodyVendor(request, body.vendorId);
        const options = jobOptions(route.spec, body, opts.maxOutputDimension);
        checkOptionUrls(options, opts);
        const items = bulkItems(body, app.vendorLimits(vendorOf(request)).bulkMaxItems);
        checkBudget(body, options, body.photos ? request.uploads.map((u) => u.size) : [null], opts.pixelBudget);
        items.forEach((item, i) => {
          if (item.photoUrl !== undefined) checkSourceUrl(item.photoUrl, body.items ? `body/items/${i}/photoUrl` : `body/photoUrls/${i}`, opts);
        });
        assertQueueable(app);
        const stored = body.photos ? await storeUploads(app, vendorOf(request).id, body.projectId, request.uploads) : [];
        const specs: JobSpec[] = items.map((item, i) => ({
          kind: route.kind,
          projectId: body.projectId,
          recordId: item.recordId,
          source: item.photoUrl !== undefined ? { type: 'url', url: item.photoUrl } : (stored[i] as JobSource),
          options,
        }));
        const plan = planJobs(vendorOf(request).id, specs, { attempts: opts.attempts, batch: true });
        const response: BulkQueuedResponse = {
          success: true,
          jobIds: plan.jobIds,
          count: plan.jobIds.length,
          batchId: plan.batchId as string,
          statusUrl: `/api/image-queue/batch/${plan.batchId}`,
          message: 'Bulk jobs queued for processing',
          estimatedTime: await estimateTime(app, estimateSettings, route.kind, specs.length),
        };
        return commitAndReply(app, request, reply, plan, response);
      },
    });
  }
};

export default routes;

/** A project-restricted token enqueues into its own project only: 403 before anything else happens. */
async function projectGuard(request: FastifyRequest): Promise<void> {
  assertProject(request, (request.body as { projectId: string }).projectId, 'body/projectId');
}

/** The vendor is the token's; a body that names another one is refused. */
export function assertBodyVendor(request: FastifyRequest, bodyVendorId: string | undefined): void {
  if (bodyVendorId !== undefined && bodyVendorId !== vendorOf(request).id) {
    throw new AppError('FORBIDDEN', 'vendorId in the body does not match the token');
  }
}

async function commitAndReply(app: FastifyInstance, request: FastifyRequest, reply: FastifyReply, plan: PlannedJobs, response: object): Promise<FastifyReply> {
  await commit(app, request, plan, response, reply);
  return reply.sent ? reply : reply.code(202).send(response);
}

/** Commits the plan; a concurrent duplicate of the Idempotency-Key is answered by replaying the first response (reply.sent). */
async function commit(app: FastifyInstance, request: FastifyRequest, plan: PlannedJobs, response: object, reply?: FastifyReply): Promise<void> {
  try {
    await app.enqueuer.commit(plan, app.idempotency.entry(request, 202, response));
  } catch (error) {
    if (error instanceof IdempotencyConflictError && reply) {
      await app.idempotency.replay(request, reply);
      return;
    }
    throw error;
  }
}

/**
 * `Prefer: wait=N` (RFC 7240): hold the answer until the job is over, at
 * most N seconds (capped at WAIT_MAX_S); a job that ends in time is answered
 * 200 with its status, like GET /job/:id, and Preference-Applied. Otherwise
 * (or beyond the waiter caps) null: the usual 202.
 */
async function waitPreferred(app: FastifyInstance, request: FastifyRequest, reply: FastifyReply, jobId: string): Promise<FastifyReply | null> {
  const seconds = preferredWait(request.headers['prefer']);
  // added to, not replaced: CORS varies the answer by Origin too
  const vary = reply.getHeader('vary');
  reply.header('vary', vary ? `${String(vary)}, Prefer` : 'Prefer');
  if (seconds === null) return null;
  const left = new AbortController();
  const onClose = () => left.abort();
  reply.raw.once('close', onClose);
  try {
    const serialize = serializerOf(reply);
    const { view } = await app.jobStatus.untilChanged<JobStatusResponse>({
      vendorId: vendorOf(request).id,
      target: { jobId },
      since: null,
      ms: seconds * 1000,
      signal: left.signal,
      etag: (v) => rendered(v, serialize).etag,
      until: 'finished',
    });
    if (!view?.finished) return null;
    reply.header('preference-applied', `wait=${seconds}`);
    return sendRendered(request, reply, rendered(view, serialize));
  } finally {
    reply.raw.off('close', onClose);
  }
}

/** The `wait` preference in seconds (RFC 7240), capped at WAIT_MAX_S; null when absent. */
export function preferredWait(header: string | string[] | undefined): number | null {
  const text = Array.isArray(header) ? header.join(',') : header;
  const match = text ? /(?:^|[,;\s])wait\s*=\s*"?(\d{1,6})"?/i.exec(text) : null;
  return match ? Math.min(Number(match[1]), WAIT_MAX_S) : null;
}

/** The job options of a request, with the contract's defaults filled in (the ledger shows what will run). */
function jobOptions(spec: AnyJobKind, body: SingleBody | BulkBody, maxDimension: number): JobPayload['options'] {
  const { options, problems } = spec.resolveOptions(body, { maxDimension });
  if (problems.length > 0) throw badFields(problems);
  return options as JobPayload['options'];
}

/**
 * A pipeline that would make an image over MAX_OUTPUT_PIXELS, or store more
 * than MAX_JOB_ENCODED_PIXELS, is refused naming its step, when the request
 * (or the uploaded photo's header) tells: `[force_resize 8192×8192, …]` on
 * any source, `rotate 45` of a 40 Mpx upload. A URL source's size is checked
 * by the worker before it does any work.
 */
function checkBudget(body: SingleBody | BulkBody, options: JobPayload['options'], sources: readonly (Size | null)[], budget: PixelBudget): void {
  if (!('operations' in options)) return;
  for (const [i, source] of sources.entries()) {
    const problem = checkPixelBudget(options.operations, source, budget);
    if (!problem) continue;
    const path = body.preset === undefined ? `body/operations/${problem.step}` : 'body/presetOptions';
    const photo = source && sources.length > 1 ? ` (body/photos/${i} is ${source.width}×${source.height})` : '';
    throw new AppError(problem.code, `${path}: ${problem.message}${photo}`, { details: { fields: [{ path, message: problem.message }] } });
  }
}

interface BulkItem {
  recordId: string;
  photoUrl?: string;
}

/**
 * A bulk body's items in request order: `items[]`, `recordIds[]` +
 * `photoUrls[]`, or (multipart) `recordIds[]` + uploaded `photos`. Exactly
 * one form, equal lengths, no record twice, at most the plan's cap (413).
 */
function bulkItems(body: BulkBody, maxItems: number): BulkItem[] {
  const problems: FieldProblem[] = [];
  let items: BulkItem[] = [];
  let path = 'body/items';
  if (body.items) {
    if (body.recordIds || body.photoUrls) problems.push({ path: 'body/items', message: 'cannot be combined with recordIds/photoUrls' });
    items = body.items;
  } else if (body.recordIds) {
    path = 'body/recordIds';
    const sources = body.photos ?? body.photoUrls;
    const sourceField = body.photos ? 'photos' : 'photoUrls';
    if (!sources) problems.push({ path: 'body/photoUrls', message: 'is required with recordIds (or send items)' });
    else if (sources.length !== body.recordIds.length) {
      problems.push({ path: `body/${sourceField}`, message: `must have as many entries as recordIds (${sources.length} ≠ ${body.recordIds.length})` });
    }
    items = body.recordIds.map((recordId, i) => (body.photos ? { recordId } : { recordId, photoUrl: body.photoUrls?.[i] as string }));
  } else {
    problems.push({ path: 'body/items', message: 'is required (or recordIds with photoUrls)' });
  }
  if (problems.length > 0) throw badFields(problems);
  if (items.length > maxItems) {
    throw new AppError('PAYLOAD_TOO_LARGE', `${path} has ${items.length} items; your plan allows at most ${maxItems} per bulk request: split it`, {
      details: { fields: [{ path, message: `must have at most ${maxItems} items` }] },
    });
  }
  const seen = new Map<string, number>();
  items.forEach((item, i) => {
    const first = seen.get(item.recordId);
    if (first !== undefined)
      problems.push({ path: body.items ? `body/items/${i}/recordId` : `body/recordIds/${i}`, message: `repeats the record of entry ${first}` });
    else seen.set(item.recordId, i);
  });
  if (problems.length > 0) throw badFields(problems.slice(0, 20));
  return items;
}

/** A background image is fetched like a source: the same guard, at enqueue. */
function checkOptionUrls(options: JobPayload['options'], opts: Pick<ImageQueueOptions, 'allowPrivateSourceUrls' | 'allowedPrivateHosts'>): void {
  const url = (options as RemoveBgOptionsType).backgroundImageUrl;
  if (url !== undefined) checkSourceUrl(url, 'body/options/backgroundImageUrl', opts);
}

/** The SSRF guard's refusal, naming the field. */
export function checkSourceUrl(url: string, path: string, opts: Pick<ImageQueueOptions, 'allowPrivateSourceUrls' | 'allowedPrivateHosts'>): void {
  try {
    checkUrl(url, { allowPrivate: opts.allowPrivateSourceUrls, allowedPrivateHosts: opts.allowedPrivateHosts, purpose: 'source' });
  } catch (error) {
    if (error instanceof AppError) throw new AppError(error.code, `${path}: ${error.message}`, { details: { fields: [{ path, message: error.message }] } });
    throw error;
  }
}
