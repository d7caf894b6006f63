import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import type * as FaceApi from '@vladmandic/face-api';
import { AppError } from '../../jobs/errors.js';
import type { WorkerResource } from '../processors/index.js';
import { measureFace, toSource, type Placement } from './geometry.js';
import { renderPlacement, type Rgb } from './render.js';

/**
 * face-api on TensorFlow.js's WebAssembly backend, loaded once per process.
 *
 * WASM runs on the JavaScript thread, one call at a time, so every model call
 * goes through one process-wide queue (`exclusive`): with face-crop
 * concurrency 3, three jobs decode, warp and encode with sharp at once (on
 * libvips threads) while their model calls take turns. Each call is short
 * (tens of ms), so Bull's lock renewals and other jobs still get the event
 * loop between them.
 *
 * The detector sees the photo downscaled to FACE_DETECT_MAX_SIDE (fast);
 * landmarks and descriptors are then computed on crops cut from the full
 * resolution photo and resized with a proper (antialiasing) filter to the
 * size each network takes, so their precision does not depend on the
 * detection scale.
 */
export type DetectorName = 'tinyFaceDetector' | 'ssdMobilenetv1';

export interface RgbImage {
  /** packed RGB, 3 bytes per pixel, row-major */
  data: Buffer;
  width: number;
  height: number;
}

export interface Point {
  x: number;
  y: number;
}

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface DetectedFace {
  /** detector box, source pixels */
  box: Box;
  score: number;
}

export interface DetectOptions {
  detector?: DetectorName;
  signal?: AbortSignal;
}

export interface FaceEngine {
  readonly detector: DetectorName;
  /** every face with its score, best score first */
  detect(image: RgbImage, options?: DetectOptions): Promise<DetectedFace[]>;
  /** 68 landmarks (iBUG 300-W order, source pixels) of the face in `box`, looked for with the face turned by -angle radians */
  landmarks(image: RgbImage, box: Box, options?: { angle?: number; signal?: AbortSignal }): Promise<Point[]>;
  /** the 128-d face descriptor of the face with these landmarks */
  descriptor(image: RgbImage, landmarks: Point[], signal?: AbortSignal): Promise<Float32Array>;
  /** detection time of the last `detect` call's model run, ms (for benchmarks) */
  lastDetectMs(): number;
}

export interface FaceEngineSettings {
  detector: DetectorName;
  /** longest side of the image the detector sees */
  maxSide: number;
  minScore: number;
  /** input sizes tinyFaceDetector runs at (multiples of 32); their detections are merged */
  tinyInputSizes: number[];
}

const BLACK: Rgb = { r: 0, g: 0, b: 0 };
export const LANDMARK_INPUT = 112;
export const DESCRIPTOR_INPUT = 150;

/** The engine as a worker resource: models load before the worker takes jobs, and are released when it closes. */
export function faceEngineResource(settings: FaceEngineSettings): { engine: FaceEngine; resource: WorkerResource } {
  const engine = createFaceEngine(settings);
  let released = false;
  return {
    engine,
    resource: {
      name: 'face-api',
      async check() {
        await acquireRuntime(engine);
      },
      async close() {
        if (released) return;
        released = true;
        await releaseRuntime(engine);
      },
    },
  };
}

export function createFaceEngine(settings: FaceEngineSettings): FaceEngine {
  let lastMs = 0;
  const self: FaceEngine = {
    detector: settings.detector,
    async detect(image, options = {}) {
      const detector = options.detector ?? settings.detector;
      const rt = await acquireRuntime(self, [detector]);
      const small = await downscale(image, settings.maxSide);
      const sx = image.width / small.width;
      const sy = image.height / small.height;
      const found = await exclusive(options.signal, async () => {
        const started = performance.now();
        const tensor = toTensor(rt, small);
        try {
          if (detector === 'ssdMobilenetv1') {
            return await rt.api.detectAllFaces(tensor, new rt.api.SsdMobilenetv1Options({ minConfidence: settings.minScore, maxResults: 100 }));
          }
          // tinyFaceDetector sees the image at one fixed input size; faces that
          // fill a portrait are found at small sizes, faces in a group at
          // larger ones. Running each configured size and merging the
          // overlaps finds both.
          const all: FaceApi.FaceDetection[] = [];
          for (const inputSize of settings.tinyInputSizes) {
            all.push(...(await rt.api.detectAllFaces(tensor, new rt.api.TinyFaceDetectorOptions({ inputSize, scoreThreshold: settings.minScore }))));
          }
          return suppressOverlaps(all);
        } finally {
          tensor.dispose();
          lastMs = performance.now() - started;
        }
      });
      return found
        .map((d) => ({ box: { x: d.box.x * sx, y: d.box.y * sy, width: d.box.width * sx, height: d.box.height * sy }, score: d.score }))
        .sort((a, b) => b.score - a.score);
    },

    async landmarks(image, box, options = {}) {
      const rt = await acquireRuntime(self);
      // The net takes a 112 px square. Cutting it here from the full
      // resolution photo, with an antialiasing filter, keeps detail that the
      // net's own bilinear resize of a large face would alias away; turning
      // the face upright first (angle) plays to what the net was trained on.
      const side = Math.max(box.width, box.height);
      const patch = squarePatch({ x: box.x + box.width / 2, y: box.y + box.height / 2 }, side, options.angle ?? 0, LANDMARK_INPUT);
      const pixels = await renderPlacement(image, patch, BLACK);
      const found = await exclusive(options.signal, async () => {
        const tensor = toTensor(rt, pixels);
        try {
          return (await rt.api.nets.faceLandmark68Net.detectLandmarks(tensor)) as FaceApi.FaceLandmarks68;
        } finally {
          tensor.dispose();
        }
      });
      return found.positions.map((p) => toSource(patch, { x: p.x, y: p.y }));
    },

    async descriptor(image, landmarks, signal) {
      const rt = await acquireRuntime(self);
      // face-api's alignment box (the landmarks' bounding box grown by 20 %,
      // made square), taken with the eye line level as dlib, which trained
      // the recognition net, aligns its face chips.
      const face = measureFace(landmarks);
      const angle = (face.tiltDeg * Math.PI) / 180;
      const level = landmarks.map((p) => rotate(p, face.eyeMid, -angle));
      const xs = level.map((p) => p.x);
      const ys = level.map((p) => p.y);
      const side = Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)) * 1.2;
      const centre = rotate({ x: (Math.max(...xs) + Math.min(...xs)) / 2, y: (Math.max(...ys) + Math.min(...ys)) / 2 }, face.eyeMid, angle);
      const pixels = await renderPlacement(image, squarePatch(centre, side, angle, DESCRIPTOR_INPUT), BLACK);
      return exclusive(signal, async () => {
        const tensor = toTensor(rt, pixels);
        try {
          return (await rt.api.nets.faceRecognitionNet.computeFaceDescriptor(tensor)) as Float32Array;
        } finally {
          tensor.dispose();
        }
      });
    },

    lastDetectMs: () => lastMs,
  };
  return self;
}

async function downscale(image: RgbImage, maxSide: number): Promise<RgbImage> {
  const longest = Math.max(image.width, image.height);
  if (longest <= maxSide) return image;
  const k = maxSide / longest;
  const width = Math.max(1, Math.round(image.width * k));
  const height = Math.max(1, Math.round(image.height * k));
  const data = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(width, height, { fit: 'fill' })
    .raw()
    .toBuffer();
  return { data, width, height };
}

/** A size×size patch showing the square of `side` source pixels centred on `centre`, turned by -angle (radians). */
function squarePatch(centre: Point, side: number, angle: number, size: number): Placement {
  return { scale: size / side, angle, anchor: centre, target: { x: size / 2, y: size / 2 }, width: size, height: size };
}

function rotate(p: Point, about: Point, angle: number): Point {
  const c = Math.cos(angle);
  const s = Math.sin(angle);
  const dx = p.x - about.x;
  const dy = p.y - about.y;
  return { x: about.x + c * dx - s * dy, y: about.y + s * dx + c * dy };
}

/** Keeps the best-scored of detections that overlap (IoU above 0.3): the same face found at two input sizes. */
function suppressOverlaps(detections: FaceApi.FaceDetection[]): FaceApi.FaceDetection[] {
  const kept: FaceApi.FaceDetection[] = [];
  for (const d of [...detections].sort((a, b) => b.score - a.score)) {
    if (kept.every((k) => iou(k.box, d.box) <= 0.3)) kept.push(d);
  }
  return kept;
}

function iou(a: Box, b: Box): number {
  const w = Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  return inter / (a.width * a.height + b.width * b.height - inter);
}

// ---------------------------------------------------------------------------
// The process-wide runtime: TensorFlow.js, its WASM backend and the models.

/** The part of @tensorflow/tfjs used here, typed with face-api's bundled tensor types. */
interface Tf {
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  tensor3d(values: Int32Array, shape: [number, number, number], dtype: 'int32'): FaceApi.tf.Tensor3D;
}

interface Runtime {
  api: typeof FaceApi;
  tf: Tf;
  loaded: Set<string>;
}

const require = createRequire(import.meta.url);
let runtime: Promise<Runtime> | undefined;
const holders = new Set<FaceEngine>();
let queue: Promise<unknown> = Promise.resolve();

function packageDir(name: string): string {
  return dirname(require.resolve(`${name}/package.json`));
}

async function acquireRuntime(engine: FaceEngine, detectors: DetectorName[] = [engine.detector]): Promise<Runtime> {
  holders.add(engine);
  runtime ??= startRuntime().catch((error: unknown) => {
    runtime = undefined;
    throw new AppError('SERVICE_UNAVAILABLE', `face models could not be loaded: ${(error as Error).message}`, { cause: error });
  });
  const rt = await runtime;
  for (const name of detectors) await loadNet(rt, name);
  return rt;
}

async function startRuntime(): Promise<Runtime> {
  // The wasm build of face-api requires these same two packages, so they are one instance.
  const api = require('@vladmandic/face-api/dist/face-api.node-wasm.js') as typeof FaceApi;
  const tf = require('@tensorflow/tfjs') as Tf;
  const wasm = require('@tensorflow/tfjs-backend-wasm') as { setWasmPaths(prefix: string): void };
  wasm.setWasmPaths(`${join(packageDir('@tensorflow/tfjs-backend-wasm'), 'dist')}/`);
  await withoutProcessHandlers(async () => {
    if (!(await tf.setBackend('wasm'))) throw new Error('the TensorFlow.js wasm backend did not start');
    await tf.ready();
  });
  const rt: Runtime = { api, tf, loaded: new Set() };
  await loadNet(rt, 'faceLandmark68Net');
  await loadNet(rt, 'faceRecognitionNet');
  return rt;
}

async function loadNet(rt: Runtime, name: DetectorName | 'faceLandmark68Net' | 'faceRecognitionNet'): Promise<void> {
  if (rt.loaded.has(name)) return;
  const net = rt.api.nets[name];
  if (!net.isLoaded) await net.loadFromDisk(join(packageDir('@vladmandic/face-api'), 'model'));
  rt.loaded.add(name);
}

/**
 * The Emscripten module behind the wasm backend adds process-wide
 * uncaughtException/unhandledRejection handlers that rethrow, which makes
 * Node print the module's whole minified source on any crash. The process's
 * own handlers (platform/process.ts) decide what a crash does; those added
 * while the backend starts are removed.
 */
async function withoutProcessHandlers(start: () => Promise<void>): Promise<void> {
  const emitter: NodeJS.EventEmitter = process;
  const events = ['uncaughtException', 'unhandledRejection'];
  const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
  try {
    await start();
  } finally {
    for (const event of events) {
      for (const listener of emitter.listeners(event)) {
        if (!before.get(event)?.has(listener)) emitter.removeListener(event, listener as (...args: unknown[]) => void);
      }
    }
  }
}

/** Frees the model weights once the last engine of the process closes. */
async function releaseRuntime(engine: FaceEngine): Promise<void> {
  holders.delete(engine);
  if (holders.size > 0 || !runtime) return;
  const pending = runtime;
  runtime = undefined;
  const rt = await pending.catch(() => undefined);
  if (!rt) return;
  await queue.catch(() => undefined);
  for (const name of rt.loaded) rt.api.nets[name as DetectorName].dispose();
}

/** Runs model calls one at a time, process-wide; a call whose job was aborted while waiting does not start. */
function exclusive<T>(signal: AbortSignal | undefined, work: () => Promise<T>): Promise<T> {
  const run = queue.then(() => {
    signal?.throwIfAborted();
    return work();
  });
  queue = run.catch(() => undefined);
  return run;
}

function toTensor(rt: Runtime, image: RgbImage): FaceApi.tf.Tensor3D {
  return rt.tf.tensor3d(Int32Array.from(image.data), [image.height, image.width, 3], 'int32');
}
