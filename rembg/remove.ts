import { RembgError } from './errors.js';
import type { InferenceThread } from './inference.js';
import type { ModelCatalog } from './models.js';
import { PixelPool } from './pixel-pool.js';

export { RembgError } from './errors.js';
export { decodeImage, modelInput } from './pixels.js';

/**
 * rembg's `remove()` for one image, step for step: EXIF orientation applied,
 * RGB resized to the model's side (Lanczos), divided by the image's maximum,
 * normalized with the model's mean and std; channel 0 of the first output,
 * min-max scaled to 0–255 and truncated as rembg's uint8 cast does, resized
 * back as the alpha mask with Pillow's own Lanczos arithmetic (pil-resize.ts);
 * optionally rembg's post-processing (opening, Gaussian blur, threshold).
 * Differences from rembg, on purpose: the cut-out keeps the photo's colours
 * under the alpha (rembg's composite also darkens them by it), and PNGs are
 * written with a faster zlib level.
 *
 * The event loop only passes bytes between threads: the pixel work runs on a
 * pixel thread leased for the call (pixel-pool.ts, pixels.ts), the model on
 * the inference thread, so /health answers while a 50 Mpx photo is worked on.
 */
export interface RemoveOptions {
  model: string;
  onlyMask: boolean;
  postProcessMask: boolean;
  /** rembg's bgc: the cut-out is composited over this colour (r, g, b, a) */
  background: readonly [number, number, number, number] | null;
  signal?: AbortSignal;
}

export interface RemoveResult {
  png: Buffer;
  width: number;
  height: number;
  inferenceMs: number;
}

export interface RemoverSettings {
  maxPixels: number;
  pngCompression: number;
  /** pixel threads: as many as images the instance works on at once (REMBG_CONCURRENCY) */
  pixelThreads: number;
}

export class BackgroundRemover {
  private readonly pixels: PixelPool;

  constructor(
    private readonly catalog: ModelCatalog,
    private readonly thread: InferenceThread,
    private readonly settings: RemoverSettings,
  ) {
    this.pixels = new PixelPool(settings.pixelThreads);
  }

  async remove(bytes: Buffer, options: RemoveOptions): Promise<RemoveResult> {
    const spec = this.catalog.find(options.model);
    if (!spec) throw new RembgError(400, `model "${options.model}" is not available here (available: ${this.catalog.available().join(', ')})`);
    const model = await this.thread.load(spec).catch((error: unknown) => {
      throw new RembgError(500, `model "${options.model}" could not be loaded: ${(error as Error).message}`, { cause: error });
    });
    const lease = await this.pixels.lease(options.signal);
    try {
      const { input, width, height } = await lease.prepare(bytes, this.settings.maxPixels, model.size, spec.mean, spec.std);
      options.signal?.throwIfAborted();
      const { output, side, ms } = await this.thread.run(model, input);
      options.signal?.throwIfAborted();
      const png = await lease.finish(output, side, {
        onlyMask: options.onlyMask,
        postProcessMask: options.postProcessMask,
        background: options.background,
        pngCompression: this.settings.pngCompression,
      });
      return { png, width, height, inferenceMs: ms };
    } finally {
      lease.release();
    }
  }

  /** Resolves once the pixel threads can take work. */
  ready(): Promise<void> {
    return this.pixels.ready();
  }

  /** Ends the pixel threads (the inference thread is its owner's to close). */
  close(): Promise<void> {
    return this.pixels.close();
  }
}
