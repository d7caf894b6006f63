import type { JobOutput } from '../../jobs/payloads.js';
import type { Operation } from '../../jobs/operations.js';
import type { JobContext, Processor, ProcessorOutput } from '../context.js';
import { tagPipelineFaces, type FaceTagger } from '../faces/tagging.js';
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

/** What a step may use beyond the image: the job, services, and `facts` it adds to the job's result. */
export interface StepJob {
  ctx: JobContext<'process'>;
  faces: FaceTagger | null;
  facts: Record<string, unknown>;
}

type Step<O extends Operation> = (state: PipelineState, op: O, job: StepJob) => Promise<PipelineState>;

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
  faces: async (state, op, job) => {
    job.facts['faces'] = await tagPipelineFaces(job.faces, fromPixels(state.pixels), op, job.ctx);
    return state;
  },
};

export function createImageProcessor(services: { faces: FaceTagger | null }): Processor<'process'> {
  return (ctx) => processImage(ctx, services);
}

export async function processImage(ctx: JobContext<'process'>, services: { faces: FaceTagger | null } = { faces: null }): Promise<ProcessorOutput> {
  const { bytes, info } = await ctx.loadSource();
  await ctx.progress(20);
  let state: PipelineState = { pixels: await decodePixels(bytes, info.width * info.height), format: naturalFormat(info.format) };
  const operations = ctx.payload.options.operations;
  const outputs: JobOutput[] = [];
  const job: StepJob = { ctx, faces: services.faces, facts: {} };
  for (const [i, op] of operations.entries()) {
    state = await (STEPS[op.op] as Step<Operation>)(state, op, job);
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
      ...job.facts,
    },
    record: { processedPhotoUrl: last?.url ?? null, width: last?.width ?? null, height: last?.height ?? null },
    recordFields: { 'process.outputs': outputs },
  };
}
