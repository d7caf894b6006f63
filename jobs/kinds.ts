import { Type, type Static, type TProperties, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { FieldProblem } from './errors.js';
import { checkRemoveBgOptions } from './cutout-options.js';
import { checkFaceCropOptions } from './face-presets.js';
import { CommonPayloadFields, FaceCropOptions, ProcessOptions, RemoveBgOptions } from './payloads.js';
import { PipelineFields, resolvePipeline, type PipelineRequest } from './presets.js';

/**
 * The job kinds, one entry each: everything the API and the worker need to
 * know about a kind besides its processor. Queue names, stats keys, request
 * bodies, enqueue routes, rate tiers, defaults for estimates and concurrency
 * settings are all read from here, so a new kind is one entry (plus its
 * processor in worker/processors/index.ts) and the compiler points at every
 * place that must handle it. docs/worker.md walks through adding one.
 *
 * Tests may register kinds of their own beside these (`buildApp(config,
 * { jobKinds })`, `createWorker(config, { kinds })`), which is why consumers
 * go through a `KindSet` rather than indexing JOB_REGISTRY by a ledger value.
 */
export interface JobKindSpec<K extends string = string, O extends TSchema = TSchema> {
  /** what the ledger stores in `jobs.kind` (at most 32 characters) */
  kind: K;
  /** the Bull queue its jobs travel on */
  queue: string;
  /** its key in queue-stats and health responses */
  statKey: string;
  /** seed 003's per-queue size field of GET /api/worker/health */
  healthSizeField: string;
  /** the job's options as its Bull payload and the ledger carry them */
  options: O;
  /** what an enqueue request for this kind adds to the body (both single and bulk) */
  requestFields: TProperties;
  /** a request's fields → the job's options (defaults filled in), or what is wrong with them (paths from `body/`) */
  resolveOptions(request: KindRequest, limits: OptionLimits): { options: Static<O>; problems: FieldProblem[] };
  /** rate-limit tier of the single-photo route (bulk routes share the `bulk` tier) */
  rateTier: 'processing' | 'backgroundRemoval';
  /** jobs of this kind a worker process runs at once: the default and the variable that overrides it */
  concurrency: { default: number; variable: string };
  /** what `estimatedTime` assumes one job takes before the ledger has recent durations */
  defaultDurationMs: number;
  /** the enqueue routes (under /api/image-queue), each with its OpenAPI operationId (unique across the API) and summary */
  routes: { single: KindRoute; bulk: KindRoute };
  /** long-lived worker resources its processor needs loaded before jobs start */
  needs: readonly WorkerNeed[];
}

export type WorkerNeed = 'rembg' | 'faces';

export interface KindRoute {
  url: string;
  operationId: string;
  summary: string;
}

/** The kind-specific fields of an enqueue body, as the handler sees them after validation. */
export interface KindRequest extends PipelineRequest {
  mode?: string | undefined;
  options?: Record<string, unknown> | undefined;
}

export interface OptionLimits {
  maxDimension: number;
}

export type AnyJobKind = JobKindSpec<string, TSchema>;

const FaceCropExtra = Type.Omit(FaceCropOptions, ['mode'], { description: 'face-crop options besides mode' });

export const JOB_REGISTRY = {
  'remove-bg': {
    kind: 'remove-bg',
    queue: 'background-removal',
    statKey: 'backgroundRemoval',
    healthSizeField: 'bgRemovalQueueSize',
    options: RemoveBgOptions,
    requestFields: { options: Type.Optional(RemoveBgOptions) },
    resolveOptions: (request) => {
      const options = Value.Default(RemoveBgOptions, structuredClone(request.options ?? {})) as RemoveBgOptions;
      return { options, problems: checkRemoveBgOptions(options).map((p) => ({ path: `body/options/${p.path}`, message: p.message })) };
    },
    rateTier: 'backgroundRemoval',
    concurrency: { default: 3, variable: 'CONCURRENCY_BACKGROUND_REMOVAL' },
    defaultDurationMs: 1500,
    routes: {
      single: { url: '/remove-bg-queue', operationId: 'queueBackgroundRemoval', summary: 'Queue one photo for background removal' },
      bulk: { url: '/bulk-remove-bg', operationId: 'queueBulkBackgroundRemoval', summary: 'Queue many photos for background removal' },
    },
    needs: ['rembg'],
  },
  'face-crop': {
    kind: 'face-crop',
    queue: 'face-crop',
    statKey: 'faceCrop',
    healthSizeField: 'faceCropQueueSize',
    options: FaceCropOptions,
    requestFields: { mode: FaceCropOptions.properties.mode, options: Type.Optional(FaceCropExtra) },
    resolveOptions: (request) => {
      const options = Value.Default(FaceCropOptions, { ...structuredClone(request.options ?? {}), mode: request.mode }) as FaceCropOptions;
      return { options, problems: checkFaceCropOptions(options).map((p) => ({ path: `body/options/${p.path}`, message: p.message })) };
    },
    rateTier: 'processing',
    concurrency: { default: 3, variable: 'CONCURRENCY_FACE_CROP' },
    defaultDurationMs: 1000,
    routes: {
      single: { url: '/crop-face-queue', operationId: 'queueFaceCrop', summary: 'Queue one photo for a passport or ID-card face crop' },
      bulk: { url: '/bulk-crop-face', operationId: 'queueBulkFaceCrop', summary: 'Queue many photos for face crops' },
    },
    // rembg only for white or transparent backgrounds; faces always
    needs: ['rembg', 'faces'],
  },
  process: {
    kind: 'process',
    queue: 'image-processing',
    statKey: 'imageProcessing',
    healthSizeField: 'imageProcessingQueueSize',
    options: ProcessOptions,
    requestFields: PipelineFields,
    // `operations` spelled out, or a named `preset`: either way the ledger and the job carry the resolved operation list.
    resolveOptions: (request, limits) => {
      const { operations, problems } = resolvePipeline(request, { maxDimension: limits.maxDimension });
      return { options: { operations }, problems: problems.map((p) => ({ path: `body/${p.path}`, message: p.message })) };
    },
    rateTier: 'processing',
    concurrency: { default: 5, variable: 'CONCURRENCY_IMAGE_PROCESSING' },
    defaultDurationMs: 300,
    routes: {
      single: { url: '/process-queue', operationId: 'queueProcessing', summary: 'Queue one photo for processing (an ordered list of operations)' },
      bulk: { url: '/bulk-process', operationId: 'queueBulkProcessing', summary: 'Queue many photos for the same processing operations' },
    },
    // the `faces` operation detects and tags faces
    needs: ['faces'],
  },
} as const satisfies { [K in string]: JobKindSpec<K, TSchema> };

type Registry = typeof JOB_REGISTRY;
export type JobKind = keyof Registry;
export type QueueName = Registry[JobKind]['queue'];
export type StatKey = Registry[JobKind]['statKey'];
export type ConcurrencyVariable = Registry[JobKind]['concurrency']['variable'];

export const JOB_KINDS = Object.keys(JOB_REGISTRY) as JobKind[];

/** The options a job of kind K carries; a kind outside the registry (a test's) carries whatever its schema says. */
export type OptionsOf<K extends string> = K extends JobKind ? Static<Registry[K]['options']> : Record<string, unknown>;

type CommonPayload = Static<typeof CommonPayloadFields>;
export type PayloadOf<K extends string> = CommonPayload & { kind: K; options: OptionsOf<K> };
export type JobPayload = { [K in JobKind]: PayloadOf<K> }[JobKind];

/** The schema of a Bull payload of one kind: checked when a job starts. */
export function payloadSchema(spec: AnyJobKind) {
  return Type.Object({ ...CommonPayloadFields.properties, kind: Type.Literal(spec.kind), options: spec.options });
}

/**
 * The kinds one process knows: the registry's, and any a test added. Lookups
 * by a value read from the ledger or Redis go through here.
 */
export interface KindSet {
  readonly list: readonly AnyJobKind[];
  readonly queues: readonly string[];
  /** the kind's entry; throws for a kind this process does not know */
  get(kind: string): AnyJobKind;
  byQueue(queue: string): AnyJobKind | undefined;
}

export function kindSet(extra: readonly AnyJobKind[] = []): KindSet {
  const list: AnyJobKind[] = [...Object.values(JOB_REGISTRY), ...extra];
  const byKind = new Map(list.map((spec) => [spec.kind, spec]));
  const byQueue = new Map(list.map((spec) => [spec.queue, spec]));
  if (byKind.size !== list.length || byQueue.size !== list.length) throw new Error('job kinds must have distinct kinds and queues');
  return {
    list,
    queues: list.map((spec) => spec.queue),
    get(kind) {
      const spec = byKind.get(kind);
      if (!spec) throw new Error(`unknown job kind "${kind}"`);
      return spec;
    },
    byQueue: (queue) => byQueue.get(queue),
  };
}

export const BUILTIN_KINDS: KindSet = kindSet();

/** A value for each registry kind, keyed by kind (the compiler checks none is missing). */
export function byKind<T>(make: <K extends JobKind>(spec: Registry[K]) => T): Record<JobKind, T> {
  return Object.fromEntries(JOB_KINDS.map((kind) => [kind, make(JOB_REGISTRY[kind])])) as Record<JobKind, T>;
}
