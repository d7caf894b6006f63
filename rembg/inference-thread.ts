import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';

/**
 * The inference thread of a rembg instance. onnxruntime-node's `run` is
 * synchronous on the calling thread, so sessions live here, off the HTTP
 * event loop: one session per model, created once, runs one at a time (each
 * run uses `threads` intra-op threads of its own).
 */
export interface InferenceThreadData {
  threads: number;
}

export type InferenceRequest =
  { id: number; type: 'load'; model: string; path: string } | { id: number; type: 'run'; model: string; input: Float32Array; size: number };

export type InferenceReply =
  | { id: number; ok: true; size: number | null }
  | { id: number; ok: true; output: Float32Array; outputSize: number; ms: number }
  | { id: number; ok: false; message: string };

const { threads } = workerData as InferenceThreadData;
const sessions = new Map<string, Promise<ort.InferenceSession>>();
const port = parentPort!;

port.on('message', (request: InferenceRequest) => {
  handle(request).then(
    (reply) => port.postMessage(reply, 'output' in reply ? [reply.output.buffer as ArrayBuffer] : []),
    (error: unknown) => port.postMessage({ id: request.id, ok: false, message: (error as Error)?.message ?? String(error) } satisfies InferenceReply),
  );
});

async function handle(request: InferenceRequest): Promise<InferenceReply> {
  if (request.type === 'load') {
    let session = sessions.get(request.model);
    if (!session) {
      session = ort.InferenceSession.create(request.path, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
      });
      sessions.set(request.model, session);
      session.catch(() => sessions.delete(request.model));
    }
    return { id: request.id, ok: true, size: squareSide(await session) };
  }
  const session = await sessions.get(request.model);
  if (!session) throw new Error(`model ${request.model} is not loaded`);
  const started = performance.now();
  const feeds = { [session.inputNames[0]!]: new ort.Tensor('float32', request.input, [1, 3, request.size, request.size]) };
  const outputs = await session.run(feeds);
  const first = outputs[session.outputNames[0]!]!;
  const dims = first.dims;
  const side = Number(dims[dims.length - 1]);
  // rembg takes channel 0 of the first output: the first side×side values.
  const output = (first.data as Float32Array).slice(0, side * side);
  for (const name of session.outputNames) outputs[name]?.dispose();
  return { id: request.id, ok: true, output, outputSize: side, ms: performance.now() - started };
}

/** The model's static square input side, when it declares one. */
function squareSide(session: ort.InferenceSession): number | null {
  const meta = session.inputMetadata[0];
  if (!meta || !meta.isTensor) return null;
  const [, , h, w] = meta.shape;
  return typeof h === 'number' && h > 0 && h === w ? h : null;
}
