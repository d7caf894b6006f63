import type { FastifyInstance } from 'fastify';

/** Small waits the end-to-end benches share. */

/** Until every one of `ids` is over in the ledger (completed, failed or dead). */
export async function settle(app: FastifyInstance, ids: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = await app.db
      .selectFrom('jobs')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('id', 'in', ids)
      .where('status', 'in', ['completed', 'failed', 'dead'])
      .executeTakeFirstOrThrow();
    if (Number(row.n) >= ids.length) return;
    if (Date.now() > deadline) throw new Error(`${ids.length - Number(row.n)} jobs did not finish within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Until a service's /health answers 200 (two minutes at most: a model is loading). */
export async function untilHealthy(url: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const ok = await fetch(`${url}/health`)
      .then((r) => r.status === 200)
      .catch(() => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${url} did not become healthy`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
