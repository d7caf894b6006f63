import { fixturePath } from '../test/helpers/fixtures.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp, { type Sharp } from 'sharp';
import { request } from 'undici';
import { buildApp } from '../backend/app.js';
import { loadApiConfig } from '../backend/config.js';
import { connectDb, serverPool, type Db } from '../db/connect.js';
import { ensureDatabase, migrateToLatest } from '../db/migrate.js';
import { createVendor } from '../db/repos/vendors.js';
import type { Operation } from '../jobs/operations.js';
import { childEnv } from '../platform/config.js';
import { fromPixels, naturalFormat, openFrame, toPixels, withEncoder, type Frame } from '../worker/processors/pixels.js';
import { inspectImage } from '../platform/images.js';
import { percentile, table, writeSection } from './results.js';
import { inFlight } from './support.js';

/**
 * Seed 001's load table reproduced here: N mixed rotate / resize /
 * force_resize / convert jobs submitted through the API as fast as it takes
 * them, run by a worker process at concurrency 1 and 5, with total time,
 * jobs/s, success rate and job latency (ledger created_at → finished_at).
 * The reference runs in the same process on the same machine: a bare sharp
 * loop doing the same operations on the same images at the same
 * concurrency, in memory, with the same encoder settings. A stage profile
 * shows where a job's time goes.
 *
 *   npm run bench -- processing [--jobs 60,100,200,500] [--concurrency 1,5] [--images photos,rembg] [--no-write] [--cpu-prof DIR]
 *
 * `photos`: the 1920-px camera photos shipped with @vladmandic/face-api
 * (2.5–3 MP, with EXIF, ICC profiles and GPS, like vendors' uploads);
 * `rembg`: the fixtures of ../shared/fixtures/rembg (0.2–1.5 MP, one a PNG).
 */
const SEED_JOBS_PER_S = 4.31;

const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '60,100,200,500' },
    concurrency: { type: 'string', default: '1,5' },
    images: { type: 'string', default: 'photos,rembg' },
    'no-write': { type: 'boolean', default: false },
    'cpu-prof': { type: 'string', default: '' },
  },
});
const JOB_COUNTS = args.jobs.split(',').map(Number);
const CONCURRENCIES = args.concurrency.split(',').map(Number);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SERVER_PIDS = findServers();

interface BenchImage {
  name: string;
  bytes: Buffer;
  format: string;
  width: number;
  height: number;
}

interface Row {
  jobs: number;
  concurrency: number;
  seconds: number;
  perSecond: number;
  success: number;
  latency: number[];
  barePerSecond: number;
  /** CPU time per job of each process taking part, and of the bare loop */
  cpu: CpuSplit;
  bareCpuMs: number;
}

interface CpuSplit {
  worker: number;
  /** this process: the API, the image host, the ledger polling */
  api: number;
  mariadb: number;
  redis: number;
}

const SETS = args.images.split(',') as ImageSet[];
const sets = new Map<ImageSet, BenchImage[]>();
for (const set of SETS) sets.set(set, await loadImages(set));
const server = await imageServer(sets);
const bench = await benchEnvironment();
const tables: { set: ImageSet; rows: Row[] }[] = [];
const fixedCosts: FixedCost[] = [];
const profile = await stageProfile([...sets.values()].flat());
console.log(profile);
try {
  for (const concurrency of CONCURRENCIES) {
    const worker = await startWorker(bench.env, concurrency);
    try {
      for (const [set, images] of sets) {
        const rows = tables.find((t) => t.set === set)?.rows ?? tables[tables.push({ set, rows: [] }) - 1]!.rows;
        const mix = jobMix(set, Math.max(...JOB_COUNTS), images.length);
        await warmUp(bench, server.url, set, images, concurrency);
        for (const jobs of JOB_COUNTS) {
          const list = mix.slice(0, jobs);
          // The reference runs before and after the worker's run and is averaged:
          // one run of it alone moves by several percent on a shared machine.
          const bareBefore = await bareLoop(list, images, concurrency);
          const run = await measured(worker.pid, jobs, () => throughApi(bench, server.url, list, `${set}-c${concurrency}-n${jobs}`));
          const bareAfter = await bareLoop(list, images, concurrency);
          const row: Row = {
            ...run.result,
            cpu: run.cpu,
            jobs,
            concurrency,
            barePerSecond: (bareBefore.perSecond + bareAfter.perSecond) / 2,
            bareCpuMs: (bareBefore.cpuMs + bareAfter.cpuMs) / 2,
          };
          rows.push(row);
          console.log(set, formatRow(row).join('  '));
        }
      }
      fixedCosts.push(await measureFixedCost(bench, server.url, worker.pid, concurrency));
    } finally {
      await stopWorker(worker);
    }
  }
} finally {
  await bench.close();
  server.close();
}

const body = report(tables, sets, fixedCosts, profile);
console.log(`\n${body}`);
if (!args['no-write']) await writeSection('processing', 'Processing: the seed-001 load table', body);

// ---------------------------------------------------------------------------

type ImageSet = 'photos' | 'rembg' | 'tiny';

interface BenchJob {
  /** path on the image host */
  path: string;
  /** index into the set's images */
  image: number;
  op: Operation;
}

/** Job i: the four operations in turn, over the images in turn, with their parameters in turn. */
function jobMix(set: ImageSet, count: number, imageCount: number): BenchJob[] {
  const ops: ((k: number) => Operation)[] = [
    (k) => ({ op: 'rotate', angle: [90, 180, 270, 30][k % 4] as number }),
    (k) => ({ op: 'resize', width: [640, 320][k % 2] as number }),
    () => ({ op: 'force_resize', width: 600, height: 400 }),
    (k) => ({ op: 'convert', format: (['webp', 'png', 'jpeg'] as const)[k % 3] as 'webp' | 'png' | 'jpeg' }),
  ];
  return Array.from({ length: count }, (_, i) => {
    const image = Math.floor(i / 4) % imageCount;
    return { path: `/${set}/${image}`, image, op: ops[i % 4]!(Math.floor(i / 4)) };
  });
}

async function loadImages(set: ImageSet): Promise<BenchImage[]> {
  if (set === 'tiny') {
    const bytes = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#808080' } })
      .jpeg()
      .toBuffer();
    return [{ name: 'tiny.jpg', bytes, format: 'jpeg', width: 16, height: 16 }];
  }
  if (set !== 'photos' && set !== 'rembg') throw new Error(`--images takes photos and/or rembg, not ${set}`);
  const files =
    set === 'photos'
      ? [1, 2, 3, 4, 5, 6].map((n) => join(ROOT, `node_modules/@vladmandic/face-api/demo/sample${n}.jpg`))
      : ['anime-girl-1.jpg', 'car-1.jpg', 'cloth-1.jpg', 'plants-1.jpg'].map((f) => fixturePath(`rembg/${f}`));
  return Promise.all(
    files.map(async (file) => {
      const bytes = await readFile(file);
      const meta = await sharp(bytes).metadata();
      return { name: basename(file), bytes, format: meta.format ?? '?', width: meta.width ?? 0, height: meta.height ?? 0 };
    }),
  );
}

/** The vendors' image host: a local HTTP server, `/<set>/<index>`. */
async function imageServer(all: Map<ImageSet, BenchImage[]>): Promise<{ url: string; close(): void; server: Server }> {
  const byPath = new Map<string, BenchImage>();
  for (const [set, list] of [...all, ['tiny', await loadImages('tiny')] as const]) list.forEach((img, i) => byPath.set(`/${set}/${i}`, img));
  const srv = createServer((req, res) => {
    const img = byPath.get(req.url ?? '');
    if (!img) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': `image/${img.format}`, 'content-length': img.bytes.length }).end(img.bytes);
  });
  srv.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, close: () => srv.close(), server: srv };
}

interface BenchEnv {
  env: Record<string, string>;
  db: Db;
  api: string;
  token: string;
  close(): Promise<void>;
}

/** A database, Bull prefix and storage folder of its own, the API listening on a local port, an unlimited vendor. */
async function benchEnvironment(): Promise<BenchEnv> {
  const suffix = randomBytes(4).toString('hex');
  const database = `iqbench_${suffix}`;
  const mysqlUrl = `mysql://root@127.0.0.1:3306/${database}`;
  await ensureDatabase(mysqlUrl);
  const migrateDb = connectDb({ url: mysqlUrl, poolSize: 1 });
  await migrateToLatest(migrateDb);
  await migrateDb.destroy();
  const storageDir = await mkdtemp(join(tmpdir(), 'iqbench-storage-'));
  const env = {
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    MYSQL_URL: mysqlUrl,
    REDIS_URL: 'redis://127.0.0.1:6379',
    BULL_PREFIX: `iqbench${suffix}`,
    STORAGE_DRIVER: 'local',
    STORAGE_LOCAL_DIR: storageDir,
    PUBLIC_BASE_URL: 'http://127.0.0.1:3000',
    JWT_SECRET: randomBytes(24).toString('hex'),
    ALLOW_PRIVATE_SOURCE_URLS: 'true',
    WORKER_QUEUES: 'image-processing',
    RECONCILE_INTERVAL_MS: '0',
  };
  const app = await buildApp(loadApiConfig({ env, processEnv: false }), { logger: false });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  const vendor = await createVendor(app.db, { name: 'bench', plan: 'unlimited' });
  const res = await fetch(`${address}/api/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ apiKey: vendor.apiKey }),
  });
  const { token } = (await res.json()) as { token: string };
  return {
    env,
    db: app.db,
    api: address,
    token,
    async close() {
      await app.queues['image-processing'].obliterate({ force: true }).catch(() => undefined);
      await app.close();
      const pool = serverPool(mysqlUrl);
      await pool.promise().query(`DROP DATABASE IF EXISTS \`${database}\``);
      await pool.promise().end();
      await rm(storageDir, { recursive: true, force: true });
    },
  };
}

/** The worker is its own process, as deployed: its event loop is not the API's. */
async function startWorker(env: Record<string, string>, concurrency: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [...(args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${args['cpu-prof']}`] : []), '--import', 'tsx', 'worker/main.ts'],
    {
      cwd: ROOT,
      env: childEnv({ ...env, CONCURRENCY_IMAGE_PROCESSING: String(concurrency) }),
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  child.once('exit', (code) => {
    if (code !== 0 && code !== null) console.error(`worker exited with ${code}`);
  });
  return child;
}

async function stopWorker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** A few jobs first, so the worker has started, connected and compiled its hot paths. */
async function warmUp(b: BenchEnv, host: string, set: ImageSet, images: BenchImage[], concurrency: number): Promise<void> {
  await throughApi(b, host, jobMix(set, Math.max(8, 2 * concurrency), images.length), `warm-${set}-c${concurrency}`, 120_000);
  await bareLoop(jobMix(set, 8, images.length), images, concurrency);
}

/** Runs `work` and reports the CPU time per job each process used meanwhile. */
async function measured<T>(workerPid: number | undefined, jobs: number, work: () => Promise<T>): Promise<{ result: T; cpu: CpuSplit }> {
  const before = cpuSplit(workerPid);
  const result = await work();
  const after = cpuSplit(workerPid);
  const cpu = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, (v - before[k as keyof CpuSplit]) / jobs])) as unknown as CpuSplit;
  return { result, cpu };
}

interface FixedCost {
  concurrency: number;
  jobs: number;
  perSecond: number;
  cpu: CpuSplit;
}

/** What the job system itself costs: jobs on a 16 × 16 image, where sharp's share is next to nothing. */
async function measureFixedCost(b: BenchEnv, host: string, workerPid: number | undefined, concurrency: number): Promise<FixedCost> {
  const list: BenchJob[] = Array.from({ length: 200 }, () => ({ path: '/tiny/0', image: 0, op: { op: 'resize', width: 8 } }));
  await throughApi(b, host, list.slice(0, 20), `tiny-warm-c${concurrency}`);
  const run = await measured(workerPid, list.length, () => throughApi(b, host, list, `tiny-c${concurrency}`));
  return { concurrency, jobs: list.length, perSecond: run.result.perSecond, cpu: run.cpu };
}

async function throughApi(
  b: BenchEnv,
  host: string,
  list: BenchJob[],
  project: string,
  timeoutMs = 60_000 + list.length * 2000,
): Promise<Pick<Row, 'seconds' | 'perSecond' | 'success' | 'latency'>> {
  const ids: string[] = [];
  await inFlight(list.length, 16, async (i) => {
    const job = list[i]!;
    // undici's request rather than fetch: the submitting client stands in for
    // the vendors' machines, and fetch costs several times its CPU per call.
    const res = await request(`${b.api}/api/image-queue/process-queue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${b.token}` },
      body: JSON.stringify({ recordId: `r${i}`, projectId: project, photoUrl: `${host}${job.path}`, operations: [job.op] }),
    });
    const body = (await res.body.json()) as { jobId?: string; message?: string };
    if (res.statusCode !== 202 || !body.jobId) throw new Error(`submit failed: ${res.statusCode} ${body.message}`);
    ids.push(body.jobId);
  });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await b.db
      .selectFrom('jobs')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('project_id', '=', project)
      .where('status', 'in', ['queued', 'active'])
      .executeTakeFirstOrThrow();
    if (Number(open.n) === 0) break;
    if (Date.now() > deadline) throw new Error(`${project}: ${open.n} jobs still open after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const rows = await b.db.selectFrom('jobs').select(['status', 'created_at', 'finished_at']).where('project_id', '=', project).execute();
  const first = Math.min(...rows.map((r) => r.created_at.getTime()));
  const last = Math.max(...rows.map((r) => r.finished_at?.getTime() ?? 0));
  const seconds = (last - first) / 1000;
  const latency = rows.map((r) => (r.finished_at?.getTime() ?? last) - r.created_at.getTime()).sort((x, y) => x - y);
  const completed = rows.filter((r) => r.status === 'completed').length;
  return { seconds, perSecond: list.length / seconds, success: completed / list.length, latency };
}

/** The reference: the same operations with sharp alone, in memory, same concurrency, same encoder settings. */
async function bareLoop(list: BenchJob[], imgs: BenchImage[], concurrency: number): Promise<{ perSecond: number; cpuMs: number }> {
  const start = performance.now();
  const cpu = process.cpuUsage();
  await inFlight(list.length, concurrency, async (i) => {
    const job = list[i]!;
    const img = imgs[job.image]!;
    await withEncoder(bareOperation(sharp(img.bytes).autoOrient(), job.op), {
      format: job.op.op === 'convert' ? job.op.format : naturalFormat(img.format),
    }).toBuffer();
  });
  const used = process.cpuUsage(cpu);
  return { perSecond: list.length / ((performance.now() - start) / 1000), cpuMs: (used.user + used.system) / 1000 / list.length };
}

/**
 * CPU time used so far by the processes a job goes through. MariaDB and
 * Redis are the machine's shared servers: on a busy machine their numbers
 * include other people's work.
 */
function cpuSplit(workerPid: number | undefined): CpuSplit {
  const own = process.cpuUsage();
  return {
    worker: processCpuMs(workerPid),
    api: (own.user + own.system) / 1000,
    mariadb: SERVER_PIDS.mariadb.reduce((sum, pid) => sum + processCpuMs(pid), 0),
    redis: SERVER_PIDS.redis.reduce((sum, pid) => sum + processCpuMs(pid), 0),
  };
}

function findServers(): { mariadb: number[]; redis: number[] } {
  const found = { mariadb: [] as number[], redis: [] as number[] };
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return found;
  }
  for (const pid of entries) {
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      // the shared servers, not the private ones tests start on other ports
      if ((comm === 'mariadbd' || comm === 'mysqld') && !cmdline.includes('--port=')) found.mariadb.push(Number(pid));
      if (comm === 'redis-server' && !cmdline.includes('--port')) found.redis.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** CPU time (user + system, all threads) a process has used so far, from /proc; NaN where there is none. */
function processCpuMs(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}

function bareOperation(image: Sharp, op: Operation): Sharp {
  switch (op.op) {
    case 'rotate':
      return image.rotate(op.angle, { background: '#000000' });
    case 'resize':
      return image.resize({ width: op.width, withoutEnlargement: true });
    case 'force_resize':
      return image.resize(op.width, op.height, { fit: 'fill' });
    default:
      return image;
  }
}

/**
 * Median time of each stage of a job on the largest image: decoding, an
 * operation streamed from the file versus through an in-memory raw copy, and
 * the encoder settings the defaults were chosen from.
 */
async function stageProfile(imgs: BenchImage[]): Promise<string> {
  // the largest photo with an embedded profile, as most camera JPEGs have
  const withProfile = await Promise.all(imgs.map(async (i) => ((await sharp(i.bytes).metadata()).icc ? i : undefined)));
  const candidates = withProfile.filter((i) => i !== undefined);
  const img = [...(candidates.length ? candidates : imgs)].sort((a, b) => b.width * b.height - a.width * a.height)[0]!;
  const frame: Frame = {
    kind: 'encoded',
    bytes: img.bytes,
    info: await inspectImage(img.bytes, 1e9),
  };
  // the worker's two ways to run one operation: streamed from the file, or decoded to memory first
  const streamed = () => openFrame(frame);
  const viaRaw = async () => fromPixels(await toPixels(openFrame(frame)));
  const { data, info } = await streamed().raw().toBuffer({ resolveWithObject: true });
  const raw = () => sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } });
  const stages: [string, () => Promise<unknown>][] = [
    ['header only (metadata)', () => sharp(img.bytes).metadata()],
    ['decode to raw, embedded profile converted (plain sharp)', () => sharp(img.bytes).autoOrient().raw().toBuffer()],
    [`decode to raw as the worker does (sRGB profile ${frame.info.srgbProfile ? 'skipped' : 'absent or not sRGB'})`, () => streamed().raw().toBuffer()],
    ['rotate 90 → jpeg, streamed from the file', () => streamed().rotate(90).jpeg().toBuffer()],
    ['rotate 90 → jpeg, decoded to memory first', async () => (await viaRaw()).rotate(90).jpeg().toBuffer()],
    ['resize 320 → jpeg, streamed (shrink-on-load)', () => streamed().resize(320).jpeg().toBuffer()],
    ['resize 320 → jpeg, decoded to memory first', async () => (await viaRaw()).resize(320).jpeg().toBuffer()],
    ['encode jpeg q80 (default: libjpeg-turbo)', () => raw().jpeg({ quality: 80 }).toBuffer()],
    ['encode jpeg q80 mozjpeg', () => raw().jpeg({ quality: 80, mozjpeg: true }).toBuffer()],
    ['encode png level 3 (default)', () => raw().png({ compressionLevel: 3 }).toBuffer()],
    ['encode png level 6 (sharp default)', () => raw().png({ compressionLevel: 6 }).toBuffer()],
    ['encode webp effort 2 (default)', () => raw().webp({ quality: 80, effort: 2 }).toBuffer()],
    ['encode webp effort 4 (sharp default)', () => raw().webp({ quality: 80, effort: 4 }).toBuffer()],
    ['encode avif effort 2 (default)', () => raw().avif({ quality: 50, effort: 2 }).toBuffer()],
  ];
  // every stage once to warm up, then rounds over all stages, so machine noise spreads evenly
  const sizes = await Promise.all(stages.map(async ([, run]) => ((await run()) as Buffer).length ?? 0));
  const times: number[][] = stages.map(() => []);
  for (let round = 0; round < 5; round++) {
    for (const [i, [, run]] of stages.entries()) {
      const start = process.cpuUsage();
      await run();
      const used = process.cpuUsage(start);
      times[i]!.push((used.user + used.system) / 1000);
    }
  }
  const out = stages.map(([name], i) => {
    const sorted = times[i]!.sort((a, b) => a - b);
    return [name, (sorted[2] as number).toFixed(1), sizes[i] ? `${Math.round(sizes[i] / 1024)} KiB` : ''];
  });
  return `Stage profile, ${img.name} (${img.width}×${img.height}), CPU ms (all threads; robust on a busy machine), median of 5:\n\n${table(['stage', 'CPU ms', 'output'], out)}`;
}

function formatRow(r: Row): string[] {
  const avg = r.latency.reduce((a, b) => a + b, 0) / r.latency.length;
  const ms = (v: number) => `${Math.round(v)} ms`;
  return [
    String(r.jobs),
    String(r.concurrency),
    `${r.seconds.toFixed(1)} s`,
    r.perSecond.toFixed(1),
    `${(100 * r.success).toFixed(1)} %`,
    ms(avg),
    ...[50, 75, 90, 95, 99].map((p) => ms(percentile(r.latency, p))),
    r.barePerSecond.toFixed(1),
    (r.perSecond / r.barePerSecond).toFixed(2),
    `${r.cpu.worker.toFixed(0)} + ${r.cpu.api.toFixed(0)} + ${r.cpu.mariadb.toFixed(0)} + ${r.cpu.redis.toFixed(0)}`,
    r.bareCpuMs.toFixed(0),
  ];
}

function report(list: { set: ImageSet; rows: Row[] }[], all: Map<ImageSet, BenchImage[]>, fixed: FixedCost[], stages: string): string {
  const header = [
    'jobs',
    'worker concurrency',
    'duration',
    'jobs/s',
    'success',
    'avg',
    'p50',
    'p75',
    'p90',
    'p95',
    'p99',
    'bare sharp jobs/s',
    'worker / bare',
    'CPU ms/job: worker + api + mariadb + redis',
    'bare CPU ms/job',
  ];
  const lines = [
    'Job mix, one operation per job, in turn: rotate 90/180/270/30°, resize to width 640/320, force_resize 600×400, convert to webp/png/jpeg; images in turn.',
    'Jobs are POSTed to /api/image-queue/process-queue (16 requests in flight, an `unlimited` vendor) while a worker process runs them;',
    'duration = first created_at → last finished_at in the ledger; latency = created_at → finished_at per job (queue wait included, as in the seed).',
    'The bare loop runs the same operations on the same images in memory with sharp alone, at the same concurrency, with the same encoder settings, just before and just after each worker run (the two averaged).',
    'CPU ms/job: user + system time of each process over the run, divided by the jobs (api = the bench process: API, submitting client, image host, ledger polling;',
    "mariadb and redis are the machine's shared servers, so on a busy machine they include other work).",
  ];
  for (const { set, rows } of list) {
    const imgs = all.get(set) ?? [];
    const best = Math.max(...rows.map((r) => r.perSecond));
    const at500 = rows.filter((r) => r.jobs === 500);
    const ratios = rows.map((r) => r.perSecond / r.barePerSecond);
    const sustained = at500.map((r) => `${(r.perSecond / r.barePerSecond).toFixed(2)} at concurrency ${r.concurrency}`);
    lines.push(
      '',
      `### ${set}: ${imgs.map((i) => `${i.name} ${i.width}×${i.height} ${i.format} (${((i.width * i.height) / 1e6).toFixed(1)} MP)`).join(', ')}`,
      '',
      table(header, rows.map(formatRow)),
      '',
      `Targets: 100 % success at 500 jobs: ${at500.length ? at500.map((r) => `${(100 * r.success).toFixed(1)} %`).join(', ') : 'not run'}; ` +
        `≥ 10× the seed's ${SEED_JOBS_PER_S} jobs/s (${(10 * SEED_JOBS_PER_S).toFixed(1)}): best ${best.toFixed(1)} jobs/s (${(best / SEED_JOBS_PER_S).toFixed(1)}×); ` +
        `worker / bare ≥ 0.8: over 500 jobs ${sustained.length ? sustained.join(', ') : 'not run'}; ` +
        `every row ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)} ` +
        '(in runs of a few seconds, the first jobs waiting for their submission and the last for their durable results weigh most).',
    );
  }
  if (fixed.length > 0) {
    lines.push(
      '',
      `Fixed cost of the job system: ${fixed[0]!.jobs} jobs resizing a 16×16 image, where sharp costs next to nothing. ` +
        'Where the CPUs are the limit, worker / bare ≈ bare CPU ÷ (bare CPU + this CPU); at concurrency 1, each job also waits 1000 ÷ (jobs/s) ms for it.',
      '',
      table(
        ['worker concurrency', 'jobs/s', 'CPU ms/job: worker + api + mariadb + redis'],
        fixed.map((f) => [
          f.concurrency,
          f.perSecond.toFixed(1),
          `${(f.cpu.worker + f.cpu.api + f.cpu.mariadb + f.cpu.redis).toFixed(0)} = ${f.cpu.worker.toFixed(0)} + ${f.cpu.api.toFixed(0)} + ${f.cpu.mariadb.toFixed(0)} + ${f.cpu.redis.toFixed(0)}`,
        ]),
      ),
    );
  }
  lines.push('', stages);
  return lines.join('\n');
}
