import type { Sharp } from 'sharp';
import type { Db } from '../../db/connect.js';
import { FACE_TAGGING_OFF_MESSAGE, faceTaggingOn, tagFaces, type TaggedFace } from '../../db/repos/faces.js';
import { AppError } from '../../jobs/errors.js';
import type { FacesOp } from '../../jobs/operations.js';
import type { JobContext } from '../context.js';
import { runSharp } from '../../platform/images.js';
import type { DetectedFace, DetectorName, FaceEngine, RgbImage } from './engine.js';
import { preciseLandmarks } from './locate.js';

/**
 * Face tagging: every face of a photo gets a 128-d descriptor and joins one
 * of the vendor's persons (db/repos/faces.ts groups them). Used by face-crop
 * jobs with `tagFaces: true` and by the `faces` processing operation.
 */
export interface FaceTaggerSettings {
  /** euclidean distance below which a face joins a person */
  maxDistance: number;
  /** faces narrower than this (source pixels) are not tagged */
  minFacePx: number;
  /** persons read per face on each side of its sketch (FACE_PERSON_CANDIDATES) */
  candidates?: number;
}

export interface TagTarget {
  vendorId: string;
  jobId: string;
  projectId: string;
  recordId: string;
}

export interface FacesSummary {
  /** faces found by the detector */
  found: number;
  /** faces too small to describe reliably, not tagged */
  skipped: number;
  faces: TaggedFace[];
  /** the record was tagged by a newer job meanwhile; these faces were not stored */
  superseded: boolean;
}

export interface FaceTagger {
  /** detects the faces (unless given), describes and groups them */
  tag(image: RgbImage, target: TagTarget, options?: { faces?: DetectedFace[]; detector?: DetectorName; signal?: AbortSignal }): Promise<FacesSummary>;
}

export function createFaceTagger(db: Db, engine: FaceEngine, settings: FaceTaggerSettings): FaceTagger {
  return {
    async tag(image, target, options = {}) {
      // Before any detection work; tagFaces checks again under the vendor's lock.
      if (!(await faceTaggingOn(db, target.vendorId))) throw new AppError('FACE_TAGGING_OFF', FACE_TAGGING_OFF_MESSAGE);
      const detected = options.faces ?? (await engine.detect(image, { detector: options.detector, signal: options.signal }));
      const usable = detected.filter((f) => f.box.width >= settings.minFacePx);
      const described = [];
      for (const face of usable) {
        const landmarks = await preciseLandmarks(engine, image, face.box, options.signal);
        described.push({ box: face.box, score: face.score, descriptor: await engine.descriptor(image, landmarks, options.signal) });
      }
      options.signal?.throwIfAborted();
      const outcome = await tagFaces(db, {
        ...target,
        imageWidth: image.width,
        imageHeight: image.height,
        faces: described,
        maxDistance: settings.maxDistance,
        ...(settings.candidates !== undefined ? { candidates: settings.candidates } : {}),
      });
      return { found: detected.length, skipped: detected.length - usable.length, faces: outcome.faces, superseded: outcome.superseded };
    },
  };
}

/**
 * The `faces` step of a processing pipeline: tags the faces of the image as
 * it is at that step, given as a sharp pipeline that reads it (oriented).
 */
export async function tagPipelineFaces(tagger: FaceTagger | null, image: Sharp, op: FacesOp, ctx: JobContext<'process'>): Promise<FacesSummary> {
  if (!tagger) throw new AppError('SERVICE_UNAVAILABLE', 'face tagging is not available in this worker');
  const { payload } = ctx;
  const rgb = await toRgb(image);
  return tagger.tag(
    rgb,
    { vendorId: payload.vendorId, jobId: payload.jobId, projectId: payload.projectId, recordId: payload.recordId },
    { detector: op.detector, signal: ctx.signal },
  );
}

async function toRgb(image: Sharp): Promise<RgbImage> {
  const { data, info } = await runSharp(() => image.flatten({ background: '#ffffff' }).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true }));
  if (info.channels !== 3) throw new AppError('BAD_IMAGE', `expected an RGB image, got ${info.channels} channels`);
  return { data, width: info.width, height: info.height };
}
