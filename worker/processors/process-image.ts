import type { JobOutput } from '../../jobs/payloads.js';
import type { Operation } from '../../jobs/operations.js';
import type { JobContext, ProcessorOutput } from '../context.js';
import { decodePixels, encode, fromPixels, naturalFormat, toPixels, type OutputFormat, type Pixels } from './pixels.js';

/**
 * The image-processing queue: an ordered pipeline of operations over one
 * source. Each step reads the previous step's pixels (kept in memory), and
 * each step's image is stored and listed in the result.
 */
export interface PipelineState {
  pixels: Pixels;
  format: OutputFormat;
}

type Step<O extends Operation> = (state: PipelineState, op: O) => Promise<PipelineState>;

const STEPS: { [K in Operation['op']]: Step<Extract<Operation, { op: K }>> } = {
  resize: async (state, op) => ({
    ...state,
    pixels: await toPixels(
      fromPixels(state.pixels).resize({
        ...(op.width !== undefined ? { width: op.width } : {}),
        ...(op.height !== undefined ? { height: op.height } : {}),
        fit: op.fit ?? 'inside',
        withoutEnlargement: op.withoutEnlargement ?? true,
        ...(op.background ? { background: op.background } : {}),
      }),
    ),
  }),
};

export async function processImage(ctx: JobContext<'process'>): Promise<ProcessorOutput> {
  const { bytes, info } = await ctx.loadSource();
  await ctx.progress(20);
  let state: PipelineState = { pixels: await decodePixels(bytes, info.width * info.height), format: naturalFormat(info.format) };
  const operations = ctx.payload.options.operations;
  const outputs: JobOutput[] = [];
  for (const [i, op] of operations.entries()) {
    state = await (STEPS[op.op] as Step<Operation>)(state, op);
    const encoded = await encode(state.pixels, state.format);
    outputs.push(await ctx.store(`${i}-${op.op}`, encoded, { format: state.format, width: state.pixels.width, height: state.pixels.height }));
    await ctx.progress(20 + (75 * (i + 1)) / operations.length);
  }
  const last = outputs[outputs.length - 1];
  return {
    result: {
      success: true,
      photoUrl: last?.url ?? null,
      width: last?.width ?? null,
      height: last?.height ?? null,
      outputs,
      source: { format: info.format, width: info.width, height: info.height, bytes: info.bytes },
    },
    record: { processedPhotoUrl: last?.url ?? null, width: last?.width ?? null, height: last?.height ?? null },
    recordFields: { 'process.outputs': outputs },
  };
}
