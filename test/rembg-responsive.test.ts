import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import t from 'tap';
import sharp from 'sharp';
import { multipartBody } from './helpers/multipart.js';
import { spawnRembg } from './helpers/rembg.js';

/**
 * A rembg instance keeps answering while it works on a huge photo (issue 18:
 * "rembg does its per-pixel mask work off the main thread"). A ~49 Mpx photo,
 * just under the default MAX_INPUT_PIXELS, is removed twice at once (plain,
 * and with ppm + bgc, so the mask post-processing and the background
 * compositing run too) by a real instance in its own process; while they run,
 * /health is asked again and again. The worker pools probe /health with a
 * 2 s timeout: an instance whose event loop sits in a pixel loop for seconds
 * (as it did: 19.7 s) is taken for dead and its work retried elsewhere.
 *
 * Bounds: 99 % of the checks within HEALTH_P99_MS, and none slower than
 * HEALTH_MAX_MS. The event loop still has a garbage collection now and then,
 * and on a loaded 2-core machine (tests run in parallel) the scheduler alone
 * holds a thread back 100–300 ms at times, so the worst single check is held
 * to a stall bound rather than to the typical answer time.
 */
const SIDE = 7000;
const HEALTH_P99_MS = 200;
const HEALTH_MAX_MS = 1000;

t.setTimeout(600_000);

t.test('/health answers promptly while a 49 Mpx photo is being cut out', async (t) => {
  const rembg = await spawnRembg(t, { REMBG_CONCURRENCY: '2' });
  // A dark subject on a light background, smooth enough to stay a small JPEG.
  const subject = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${SIDE}" height="${SIDE}"><ellipse cx="${SIDE / 2}" cy="${SIDE * 0.55}" rx="${SIDE * 0.25}" ry="${SIDE * 0.35}" fill="#3a2a1a"/><circle cx="${SIDE / 2}" cy="${SIDE * 0.2}" r="${SIDE * 0.12}" fill="#c08060"/></svg>`,
  );
  const photo = await sharp({ create: { width: SIDE, height: SIDE, channels: 3, background: '#e8eef4' } })
    .composite([{ input: subject }])
    .jpeg({ quality: 85 })
    .toBuffer();

  // Bodies encoded beforehand: this process only writes bytes while it measures.
  const forms = await Promise.all(
    ([{}, { ppm: 'true', bgc: '255,255,255,255' }] as Record<string, string>[]).map((fields) =>
      multipartBody(fields, [{ field: 'file', filename: 'huge.jpg', contentType: 'image/jpeg', bytes: photo }]),
    ),
  );
  // Answers streamed to files: a 49 Mpx PNG gathered into one buffer would
  // stall this process's own event loop and show up as a slow health check.
  const dir = await mkdtemp(join(tmpdir(), 'rembg-responsive-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const remove = async (form: { payload: Buffer; headers: Record<string, string> }, i: number) => {
    const res = await fetch(`${rembg.url}/api/remove`, { method: 'POST', body: new Uint8Array(form.payload), headers: form.headers });
    const file = join(dir, `${i}.out`);
    await pipeline(Readable.fromWeb(res.body as NodeReadableStream<Uint8Array>), createWriteStream(file));
    return { status: res.status, file };
  };

  let working = true;
  const started = performance.now();
  const work = Promise.all(forms.map(remove)).finally(() => (working = false));

  const latencies: number[] = [];
  const slow: string[] = [];
  while (working) {
    const asked = performance.now();
    const res = await fetch(`${rembg.url}/health`, { signal: AbortSignal.timeout(30_000) });
    await res.arrayBuffer();
    const ms = performance.now() - asked;
    latencies.push(ms);
    if (ms > HEALTH_P99_MS) slow.push(`${ms.toFixed(0)} ms at ${((asked - started) / 1000).toFixed(1)} s`);
    t.equal(res.status, 200, 'healthy while busy', { diagnostic: false });
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  const [plain, styled] = await work;
  const total = performance.now() - started;

  for (const [name, res] of [
    ['plain', plain],
    ['ppm + bgc', styled],
  ] as const) {
    if (!res) throw new Error(`${name}: no answer`);
    t.equal(res.status, 200, `${name}: ${res.status === 200 ? 'cut out' : (await readFile(res.file, 'utf8')).slice(0, 200)}`);
    if (res.status === 200) t.match(await sharp(res.file).metadata(), { width: SIDE, height: SIDE, format: 'png', channels: 4 }, `${name}: full size PNG`);
  }
  latencies.sort((a, b) => a - b);
  t.comment(
    `2 × ${((SIDE * SIDE) / 1e6).toFixed(0)} Mpx in ${(total / 1000).toFixed(1)} s; ${latencies.length} health checks meanwhile: p50 ${latencies[Math.floor(latencies.length / 2)]?.toFixed(1)} ms, max ${latencies.at(-1)?.toFixed(1)} ms`,
  );
  t.ok(latencies.length >= 10, `health was asked throughout the work (${latencies.length} times)`);
  const p99 = latencies[Math.min(latencies.length - 1, Math.ceil(latencies.length * 0.99) - 1)] ?? Infinity;
  t.ok(p99 <= HEALTH_P99_MS, `99 % of the health checks answered within ${HEALTH_P99_MS} ms (p99 ${p99.toFixed(0)} ms; slower: ${slow.join(', ') || 'none'})`);
  t.ok((latencies.at(-1) ?? Infinity) <= HEALTH_MAX_MS, `none took longer than ${HEALTH_MAX_MS} ms (slowest ${latencies.at(-1)?.toFixed(0)} ms)`);
});
