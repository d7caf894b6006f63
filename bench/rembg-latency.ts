import { fixturePath } from '../test/helpers/fixtures.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { childEnv } from '../platform/config.js';
import { freePort } from '../test/helpers/private-services.js';
import { multipartBody } from '../test/helpers/multipart.js';
import { percentile, table, writeSection } from './results.js';
import { untilHealthy } from './support.js';

/**
 * One rembg instance's latency, per call, and its /health while a huge photo
 * is worked on; optionally against an earlier version of the code in the
 * same run. Each version is one instance (`node --import tsx
 * rembg/server.ts` from its own checkout, REMBG_THREADS=1, REMBG_CONCURRENCY=2);
 * the fixture photos go one at a time, alternating between the versions
 * (so a change in the machine's load hits both alike), `--repeats` times
 * each. Then each version cuts out a `--side`² photo (49 Mpx by default,
 * just under MAX_INPUT_PIXELS) while /health is asked every 25 ms.
 *
 *   git worktree add --detach /tmp/rembg-before <ref> && ln -s "$PWD/node_modules" /tmp/rembg-before/
 *   npm run bench -- rembg-latency [--before /tmp/rembg-before] [--before-label <ref>] [--repeats 15] [--side 7000]
 */
const { values: args } = parseArgs({
  options: {
    before: { type: 'string' },
    'before-label': { type: 'string', default: 'before' },
    repeats: { type: 'string', default: '15' },
    side: { type: 'string', default: '7000' },
  },
});
const REPEATS = Number(args.repeats);
const SIDE = Number(args.side);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NAMES = ['anime-girl-1.jpg', 'car-1.jpg', 'cloth-1.jpg', 'plants-1.jpg'];

interface Version {
  label: string;
  root: string;
  url: string;
  child: ChildProcess;
}

type Form = Awaited<ReturnType<typeof multipartBody>>;

async function start(label: string, root: string): Promise<Version> {
  if (!existsSync(resolve(root, 'rembg/server.ts'))) throw new Error(`${root} has no rembg/server.ts`);
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'rembg/server.ts'], {
    cwd: root,
    env: childEnv({ LOG_LEVEL: 'warn', NODE_ENV: 'production', REMBG_PORT: String(port), REMBG_THREADS: '1', REMBG_CONCURRENCY: '2' }),
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  await untilHealthy(url);
  return { label, root, url, child };
}

async function remove(version: Version, form: Form): Promise<number> {
  const started = performance.now();
  const res = await fetch(`${version.url}/api/remove`, { method: 'POST', body: new Uint8Array(form.payload), headers: form.headers });
  // streamed and dropped: gathering a huge PNG would stall this process, not the instance
  await res.body?.pipeTo(new WritableStream());
  if (res.status !== 200) throw new Error(`${version.label}: /api/remove answered ${res.status}`);
  return performance.now() - started;
}

async function huge(version: Version, form: Form): Promise<{ ms: number; checks: number[] }> {
  let working = true;
  const work = remove(version, form).finally(() => (working = false));
  const checks: number[] = [];
  while (working) {
    const asked = performance.now();
    const res = await fetch(`${version.url}/health`, { signal: AbortSignal.timeout(60_000) });
    await res.arrayBuffer();
    checks.push(performance.now() - asked);
    await new Promise((r) => setTimeout(r, 25));
  }
  return { ms: await work, checks: checks.sort((a, b) => a - b) };
}

async function main(): Promise<void> {
  const photos = await Promise.all(
    NAMES.map(async (name) => {
      const bytes = await readFile(fixturePath(`rembg/${name}`));
      const { width, height } = await sharp(bytes).metadata();
      return { name, size: `${width}×${height}`, form: await multipartBody({}, [{ field: 'file', filename: name, contentType: 'image/jpeg', bytes }]) };
    }),
  );
  const subject = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${SIDE}" height="${SIDE}"><ellipse cx="${SIDE / 2}" cy="${SIDE * 0.55}" rx="${SIDE * 0.25}" ry="${SIDE * 0.35}" fill="#3a2a1a"/><circle cx="${SIDE / 2}" cy="${SIDE * 0.2}" r="${SIDE * 0.12}" fill="#c08060"/></svg>`,
  );
  const big = await sharp({ create: { width: SIDE, height: SIDE, channels: 3, background: '#e8eef4' } })
    .composite([{ input: subject }])
    .jpeg({ quality: 85 })
    .toBuffer();
  const bigForm = await multipartBody({}, [{ field: 'file', filename: 'huge.jpg', contentType: 'image/jpeg', bytes: big }]);

  const versions: Version[] = [];
  try {
    if (args.before) versions.push(await start(args['before-label'], resolve(args.before)));
    versions.push(await start('this checkout', ROOT));
    for (const v of versions) for (const p of photos) await remove(v, p.form); // warm
    const loadBefore = loadavg()[0]!;

    const times = new Map<string, number[]>();
    for (const p of photos) {
      for (let r = 0; r < REPEATS; r++) {
        // alternate which version goes first
        for (const v of r % 2 ? [...versions].reverse() : versions) {
          const key = `${v.label}|${p.name}`;
          times.set(key, [...(times.get(key) ?? []), await remove(v, p.form)]);
        }
      }
    }
    const bigRuns = [];
    for (const v of versions) bigRuns.push({ v, ...(await huge(v, bigForm)) });

    const p50 = (label: string, name: string) =>
      percentile(
        [...(times.get(`${label}|${name}`) ?? [])].sort((a, b) => a - b),
        50,
      );
    const header = ['photo', ...versions.map((v) => `${v.label}: p50 ms`), ...(versions.length > 1 ? ['change'] : [])];
    const rows = photos.map((p) => {
      const values = versions.map((v) => p50(v.label, p.name));
      const change = versions.length > 1 ? [`${(((values[1]! - values[0]!) / values[0]!) * 100).toFixed(1)} %`] : [];
      return [`${p.name} (${p.size})`, ...values.map((ms) => ms.toFixed(0)), ...change];
    });
    const body = [
      `One rembg instance per version (REMBG_THREADS=1, REMBG_CONCURRENCY=2, u2netp), uploads over HTTP one at a time, ${REPEATS} per photo and version, the versions alternating.${args.before ? ` "${args['before-label']}": ${args.before}.` : ''}`,
      '',
      table(header, rows),
      '',
      `Load average (1 min) of the machine: ${loadBefore.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end (on a machine shared with other work, compare the versions within this run only).`,
      '',
      `A ${SIDE}×${SIDE} photo (${((SIDE * SIDE) / 1e6).toFixed(0)} Mpx) cut out alone, /health asked every 25 ms meanwhile:`,
      '',
      table(
        ['version', 'cut-out s', 'health checks', 'health p50 ms', 'health p99 ms', 'health max ms'],
        bigRuns.map((b) => [
          b.v.label,
          (b.ms / 1000).toFixed(1),
          b.checks.length,
          percentile(b.checks, 50).toFixed(1),
          percentile(b.checks, 99).toFixed(0),
          (b.checks.at(-1) ?? NaN).toFixed(0),
        ]),
      ),
    ].join('\n');
    console.log(body);
    await writeSection('rembg-latency', 'rembg instance latency per photo; /health during a 49 Mpx photo', body);
  } finally {
    for (const v of versions) v.child.kill('SIGTERM');
  }
}

await main();
