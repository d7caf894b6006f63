/**
 * What the worker needs from background removal, whichever way it is done
 * (the load-balanced pool of rembg instances in production). Face crop uses
 * it for white/transparent backgrounds; the background-removal processor for
 * everything.
 */
export interface RemoveBackgroundOptions {
  /** rembg model name; the service's default (u2netp) when absent */
  model?: string;
  /** return only the mask (grey PNG) instead of the cut-out */
  onlyMask?: boolean;
  /** aborts the call (job timeout, shutdown) */
  signal: AbortSignal;
}

export interface RembgClient {
  /** The cut-out as an RGBA PNG of the same size as the input. */
  removeBackground(image: Buffer, options: RemoveBackgroundOptions): Promise<Buffer>;
}
