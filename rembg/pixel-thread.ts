import { getPriority, setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { RembgError } from './errors.js';
import { finish, prepare, type Decoded, type MaskOptions } from './pixels.js';

/**
 * One pixel thread of a rembg instance (pixel-pool.ts). It works on one
 * photo at a time: `prepare` decodes it, keeps the decoded pixels and answers
 * the model's input tensor; `finish` takes the model's output and answers the
 * PNG; `drop` forgets the photo (a caller that went away between the two).
 * The JavaScript loops over every pixel (the Lanczos mask resize, ppm's
 * filters, alpha and background compositing) run here, so the instance's
 * event loop keeps answering /health and new requests meanwhile.
 */
/** how much nicer than the event loop a pixel thread runs */
const PIXEL_NICE = 10;

export type PixelRequest =
  | { id: number; type: 'prepare'; bytes: Uint8Array; maxPixels: number; side: number; mean: number[]; std: number[] }
  | { id: number; type: 'finish'; output: Float32Array; side: number; options: MaskOptions }
  | { id: number; type: 'drop' };

export type PixelReply =
  | { id: number; ok: true; input: Float32Array; width: number; height: number }
  | { id: number; ok: true; png: Uint8Array }
  | { id: number; ok: true }
  /** status: the HTTP status of a RembgError (bad, huge or unreadable image), null for a failure of ours */
  | { id: number; ok: false; status: number | null; message: string };

const port = parentPort!;
let held: Decoded | null = null;

// Below the event loop's priority (Linux keeps a nice value per thread): on a
// busy machine the scheduler runs the loop that answers /health first and
// gives the pixel loops what is left, instead of sharing the cores alike.
try {
  setPriority(Math.min(19, getPriority() + PIXEL_NICE));
} catch {
  // not permitted here: same priority as the event loop
}

port.on('message', (request: PixelRequest) => {
  handle(request).then(
    ({ reply, transfer }) => port.postMessage(reply, transfer),
    (error: unknown) =>
      port.postMessage({
        id: request.id,
        ok: false,
        status: error instanceof RembgError ? error.status : null,
        message: (error as Error)?.message ?? String(error),
      } satisfies PixelReply),
  );
});

async function handle(request: PixelRequest): Promise<{ reply: PixelReply; transfer: ArrayBuffer[] }> {
  if (request.type === 'drop') {
    held = null;
    return { reply: { id: request.id, ok: true }, transfer: [] };
  }
  if (request.type === 'prepare') {
    held = null;
    const { image, input } = await prepare(request.bytes, request.maxPixels, request.side, request.mean, request.std);
    held = image;
    return { reply: { id: request.id, ok: true, input, width: image.width, height: image.height }, transfer: [input.buffer as ArrayBuffer] };
  }
  const image = held;
  if (!image) throw new Error('no photo prepared on this pixel thread');
  held = null;
  const png = await finish(image, request.output, request.side, request.options);
  // sharp's buffer lives outside V8 and cannot be transferred: copied here,
  // once, so the event loop receives it without copying.
  const out = new Uint8Array(png.length);
  out.set(png);
  return { reply: { id: request.id, ok: true, png: out }, transfer: [out.buffer] };
}
