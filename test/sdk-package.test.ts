import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { isolatedEnv } from './helpers/env.js';
import { listeningApp } from './helpers/app.js';
import { createVendor } from '../db/repos/vendors.js';

/**
 * The SDK as it would be published (issue 19): `npm pack` in sdk/ (which
 * builds it), the tarball checked by publint and @arethetypeswrong/cli, then
 * installed into an empty project and used from there, not from the source:
 * an ES module and a CommonJS script call the real API with it, and
 * TypeScript type-checks both kinds of consumer against its declarations.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SDK = join(ROOT, 'sdk');
const run = promisify(execFile);
const BUILD_TIMEOUT_MS = 180_000;

async function ok(t: Test, what: string, command: string, args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await run(command, args, { cwd, timeout: BUILD_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 });
    t.pass(what);
    return stdout;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    t.fail(`${what}: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
    throw error;
  }
}

t.test('the packed SDK: publint, attw, and ESM, CommonJS and TypeScript consumers of the installed tarball', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'iq-sdk-pack-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));

  const packed = JSON.parse(await ok(t, 'npm pack (builds dist/)', 'npm', ['pack', '--json', '--pack-destination', dir], SDK)) as {
    filename: string;
    files: { path: string }[];
  }[];
  const info = packed[0]!;
  t.same(
    info.files.map((f) => f.path).sort(),
    [
      'LICENSE',
      'README.md',
      'dist/cjs/index.d.ts',
      'dist/cjs/index.js',
      'dist/cjs/package.json',
      'dist/cjs/types.d.ts',
      'dist/cjs/types.js',
      'dist/index.d.ts',
      'dist/index.js',
      'dist/types.d.ts',
      'dist/types.js',
      'package.json',
    ],
    'the tarball holds the builds, their types, README and licence, and no source',
  );
  const tarball = join(dir, info.filename);

  t.match(await ok(t, 'publint --strict', join(ROOT, 'node_modules/.bin/publint'), ['run', tarball, '--strict'], ROOT), /All good/);
  const attw = await ok(t, 'attw (strict profile)', join(ROOT, 'node_modules/.bin/attw'), [tarball, '--format', 'json'], ROOT);
  t.same(
    (JSON.parse(attw) as { analysis: { problems: unknown[] } }).analysis.problems,
    [],
    'no type resolution problem for node10, node16 (CJS and ESM) or bundlers',
  );

  // An empty project that installs the tarball (no registry needed: the SDK has no dependencies).
  const consumer = join(dir, 'consumer');
  await mkdir(consumer);
  await writeFile(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  await ok(t, 'npm install <tarball>', 'npm', ['install', tarball, '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], consumer);

  const env = await isolatedEnv(t);
  const { app, url } = await listeningApp(t, env);
  const { apiKey } = await createVendor(app.db, { name: 'Packed', plan: 'unlimited' });

  const use = (load: string) => `${load}
const client = new sdk.ImageQueueClient({ baseUrl: process.argv[2], apiKey: process.argv[3] });
const stats = await client.getQueueStats();
const queueAPI = sdk.createQueueAPI({ baseUrl: process.argv[2], getToken: () => 'not-a-token' });
const refused = await queueAPI.getJobStatus('01ARZ3NDEKTSV4RRFFQ69G5FAV').catch((error) => error);
console.log(JSON.stringify({
  from: resolved,
  exports: Object.keys(sdk).filter((k) => typeof sdk[k] === 'function').sort(),
  scope: stats.scope,
  refused: { isImageQueueError: refused instanceof sdk.ImageQueueError, status: refused.status },
}));
`;
  await writeFile(
    join(consumer, 'esm.mjs'),
    use(`import * as sdk from '@imagequeue/sdk';
const resolved = import.meta.resolve('@imagequeue/sdk');`),
  );
  await writeFile(
    join(consumer, 'cjs.cjs'),
    `(async () => {
${use(`const sdk = require('@imagequeue/sdk');
const resolved = require.resolve('@imagequeue/sdk');`)}
})().catch((error) => { console.error(error); process.exit(1); });
`,
  );
  for (const [file, entry] of [
    ['esm.mjs', /\/consumer\/node_modules\/@imagequeue\/sdk\/dist\/index\.js$/],
    ['cjs.cjs', /\/consumer\/node_modules\/@imagequeue\/sdk\/dist\/cjs\/index\.js$/],
  ] as const) {
    const out = JSON.parse(await ok(t, `node ${file}`, process.execPath, [file, url, apiKey], consumer)) as Record<string, unknown>;
    t.match(out['from'], entry, `${file} loads the installed package's own build`);
    t.same(
      out['exports'],
      [
        'ImageQueueClient',
        'ImageQueueError',
        'JobFailedError',
        'PollTimeoutError',
        'RateLimitedError',
        'createQueueAPI',
        'parseWebhook',
        'retryAfterMs',
        'verifyWebhook',
      ],
      `${file}: every export`,
    );
    t.equal(out['scope'], 'vendor', `${file}: a real call with the API key`);
    t.same(out['refused'], { isImageQueueError: true, status: 401 }, `${file}: a refused token is a typed error`);
  }

  // TypeScript consumers of both kinds resolve the declarations for their format.
  const typed = `import { createQueueAPI, ImageQueueClient, type JobStatusResponse, type QueueAPI } from '@imagequeue/sdk';
const queueAPI: QueueAPI = createQueueAPI({ baseUrl: 'https://iq.example.com', getToken: async () => 'token' });
export async function flow(file: Blob): Promise<string> {
  const { jobId } = await queueAPI.uploadForBackgroundRemoval('record', 'project', file);
  const job: JobStatusResponse = await queueAPI.pollJobUntilComplete(jobId, 60_000);
  // @ts-expect-error recordId is a string
  await queueAPI.queueBackgroundRemoval(1, 'project', 'https://img.example/a.jpg');
  return job.state;
}
export const client = new ImageQueueClient({ baseUrl: 'https://iq.example.com', apiKey: 'iqk_x' });
`;
  await writeFile(join(consumer, 'esm-consumer.mts'), typed);
  await writeFile(join(consumer, 'cjs-consumer.cts'), typed);
  await writeFile(
    join(consumer, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', lib: ['ES2022', 'DOM'], strict: true, noEmit: true, types: [] },
      files: ['esm-consumer.mts', 'cjs-consumer.cts'],
    }),
  );
  await ok(t, 'tsc: ESM and CommonJS TypeScript consumers', process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], consumer);
});
