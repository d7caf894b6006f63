import type { RembgInstanceState } from '../../jobs/heartbeat.js';
import type { Db } from '../../db/connect.js';
import type { JobKind, KindSet, WorkerNeed } from '../../jobs/kinds.js';
import type { Logger } from '../../platform/logger.js';
import type { WorkerConfig } from '../config.js';
import type { AnyProcessor, Processor } from '../context.js';
import { tinyInputSizes } from '../faces/config-section.js';
import { faceEngineResource } from '../faces/engine.js';
import { createFaceTagger } from '../faces/tagging.js';
import { createFaceCropProcessor } from './face-crop.js';
import { createProcessImage } from './process-image.js';
import { pixelBudgetOf } from '../../jobs/pixel-budget.js';
import { createRemoveBgProcessor } from './remove-bg.js';
import { parseRembgUrls, RembgPool } from '../rembg/pool.js';

/**
 * The processors of each job kind, and the long-lived resources they need
 * (model sessions, the rembg pool), built once per worker process. Resources
 * are checked before the worker takes jobs and closed after its queues.
 */
export type ProcessorMap = { [K in JobKind]: Processor<K> };
/** Processors replacing built ones, or for a test's extra kinds. */
export type ExtraProcessors = Partial<ProcessorMap> & Record<string, AnyProcessor | undefined>;

export interface WorkerResource {
  name: string;
  /** throws while the resource cannot serve jobs (checked before queues start) */
  check?(): Promise<void>;
  close(): Promise<void>;
  /** the rembg instances this resource balances over, as the worker heartbeat reports them */
  rembgInstances?(): RembgInstanceState[];
}

export interface ProcessorSet {
  processors: ProcessorMap;
  resources: WorkerResource[];
}

/** What processors may share with the worker around them. */
export interface ProcessorDeps {
  db: Db;
}

export async function buildProcessors(config: WorkerConfig, log: Logger, deps: ProcessorDeps, kinds: KindSet): Promise<ProcessorSet> {
  const served = config.WORKER_QUEUES.split(',').map((q) => q.trim());
  // Resources load only for the kinds served (their registry entry's `needs`):
  // a background-removal-only worker does not load face models, a
  // processing-only one does not probe rembg.
  const needs = (need: WorkerNeed) => served.some((queue) => kinds.byQueue(queue)?.needs.includes(need));
  const needsRembg = needs('rembg');
  const pool = needsRembg ? rembgPool(config, log) : null;
  const faces = faceEngineResource({
    detector: config.FACE_DETECTOR,
    maxSide: config.FACE_DETECT_MAX_SIDE,
    minScore: config.FACE_MIN_SCORE,
    tinyInputSizes: tinyInputSizes(config.FACE_TINY_INPUT_SIZES),
  });
  const tagger = createFaceTagger(deps.db, faces.engine, {
    maxDistance: config.FACE_PERSON_MAX_DISTANCE,
    minFacePx: config.FACE_TAG_MIN_FACE_PX,
    candidates: config.FACE_PERSON_CANDIDATES,
  });
  const faceCrop = createFaceCropProcessor({
    engine: faces.engine,
    rembg: pool,
    tagger,
    settings: {
      minHeadPx: { passport: config.FACE_MIN_HEAD_PX_PASSPORT, idcard: config.FACE_MIN_HEAD_PX_IDCARD },
      onlyIgnoreBelow: config.FACE_ONLY_IGNORE_BELOW,
      backgroundModel: config.FACE_BACKGROUND_MODEL || null,
    },
  });
  const needsFaces = needs('faces');
  return {
    processors: {
      process: createProcessImage({ faces: tagger, budget: pixelBudgetOf(config) }),
      'face-crop': faceCrop,
      'remove-bg': createRemoveBgProcessor({ rembg: pool, defaultModel: config.REMBG_DEFAULT_MODEL }),
    },
    resources: [...(needsFaces ? [faces.resource] : []), ...(pool ? [poolResource(pool)] : [])],
  };
}

function rembgPool(config: WorkerConfig, log: Logger): RembgPool {
  return new RembgPool(
    {
      urls: parseRembgUrls(config.REMBG_URLS),
      defaultModel: config.REMBG_DEFAULT_MODEL,
      timeoutMs: config.REMBG_TIMEOUT_MS,
      healthIntervalMs: config.REMBG_HEALTH_INTERVAL_MS,
      failureThreshold: config.REMBG_FAILURE_THRESHOLD,
      openMs: config.REMBG_OPEN_MS,
      waitMs: config.REMBG_WAIT_MS,
    },
    log.child({ component: 'rembg-pool' }),
  );
}

/** The pool as a worker resource: no start check (jobs that need rembg fail retryably while it is down), its instances in the heartbeat. */
function poolResource(pool: RembgPool): WorkerResource {
  return { name: 'rembg-pool', close: () => pool.close(), rembgInstances: () => pool.rembgInstances() };
}
