import type { FastifyInstance } from 'fastify';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the end-to-end benches share: small waits, the vendors' image host, a JSON POST. */

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

/** Runs work(0 … count − 1) with at most `lanes` calls in flight, each lane taking the next index as it frees. */
export async function inFlight(count: number, lanes: number, work: (index: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(lanes, count) }, async () => {
      while (next < count) await work(next++);
    }),
  );
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

/** The vendors' image host: a local HTTP server answering each path with its JPEG bytes. */
export async function jpegHost(byPath: Map<string, Buffer>): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const bytes = byPath.get(req.url ?? '');
    if (!bytes) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': bytes.length }).end(bytes);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

export function post(body: unknown): RequestInit {
  return { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}
