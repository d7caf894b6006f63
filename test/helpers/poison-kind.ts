import { setTimeout as sleep } from 'node:timers/promises';
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { JobKindSpec } from '../../jobs/kinds.js';
import type { JobContext, ProcessorOutput } from '../../worker/context.js';

/**
 * A test-only job kind for poison jobs (test/hostile-poison.test.ts): a job
 * holds its slot `holdMs`, then either completes or, with `crash`, ends its
 * whole worker process (exit code POISON_EXIT_CODE), as a native crash or an
 * out-of-memory kill would.
 */
export const POISON_EXIT_CODE = 70;

const PoisonOptions = Type.Object({ crash: Type.Boolean(), holdMs: Type.Integer({ minimum: 0, maximum: 30_000 }) }, { additionalProperties: false });

export const poisonKind: JobKindSpec<'poison', typeof PoisonOptions> = {
  kind: 'poison',
  queue: 'poison-test',
  statKey: 'poison',
  healthSizeField: 'poisonQueueSize',
  options: PoisonOptions,
  requestFields: { options: PoisonOptions },
  resolveOptions: (request) => ({ options: Value.Clone(request.options ?? {}) as { crash: boolean; holdMs: number }, problems: [] }),
  rateTier: 'processing',
  concurrency: { default: 3, variable: 'CONCURRENCY_POISON_TEST' },
  defaultDurationMs: 100,
  routes: {
    single: { url: '/poison-queue', operationId: 'queuePoison', summary: 'A job that may crash its worker' },
    bulk: { url: '/bulk-poison', operationId: 'queueBulkPoison', summary: 'Many of them' },
  },
  needs: [],
};

export async function poison(ctx: JobContext<'poison'>): Promise<ProcessorOutput> {
  const { crash, holdMs } = ctx.payload.options as { crash: boolean; holdMs: number };
  await sleep(holdMs, undefined, { signal: ctx.signal });
  if (crash) process.exit(POISON_EXIT_CODE);
  return { result: { survived: true }, record: { processedPhotoUrl: null, width: null, height: null }, recordFields: {} };
}
