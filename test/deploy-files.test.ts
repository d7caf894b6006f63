import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { allVariables, CONFIG_SCHEMAS } from '../scripts/config-registry.js';

/**
 * docker-compose.yml and the Dockerfiles, checked offline (no Docker engine
 * runs here): the compose file passes dclint (compose-spec schema and rules),
 * has every service the README promises with health checks, starts the API
 * and workers only after migrations succeeded, lets the worker scale, and
 * points at commands and variables that exist; the images are multi-stage,
 * on a slim Node 22 base, and run as a non-root user.
 */
const root = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));
const composeText = readFileSync(root('docker-compose.yml'), 'utf8');

interface Service {
  build?: { context: string; dockerfile: string };
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  env_file?: ({ path: string; required?: boolean } | string)[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  ports?: unknown[];
  expose?: string[];
  container_name?: string;
  volumes?: string[];
  restart?: string;
}
const compose = parse(composeText, { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const services = compose.services;

t.test('dclint accepts docker-compose.yml with no warnings', async (t) => {
  const run = spawnSync(root('node_modules/.bin/dclint'), ['docker-compose.yml', '--max-warnings', '0'], { cwd: root('.'), encoding: 'utf8' });
  t.equal(run.status, 0, run.stdout + run.stderr);
});

t.test('every service of the system is there, with a health check', async (t) => {
  t.same(Object.keys(services).sort(), ['api', 'migrate', 'mysql', 'redis', 'rembg', 'rembg-1', 'rembg-2', 'worker'].sort());
  for (const [name, service] of Object.entries(services)) {
    if (name === 'migrate') continue;
    t.ok(service.healthcheck?.test?.length, `${name} has a health check`);
  }
});

t.test('redis keeps jobs across restarts and never evicts Bull keys', async (t) => {
  const command = services['redis']?.command?.join(' ') ?? '';
  t.match(command, /--appendonly yes/);
  t.match(command, /--maxmemory-policy noeviction/);
  t.ok(
    services['redis']?.volumes?.some((v) => v.endsWith(':/data')),
    'the append-only file is on a volume',
  );
});

t.test('no password has a default: compose refuses to start until .env sets each, and Redis requires one', async (t) => {
  const uncommented = composeText.replace(/^\s*#.*$/gm, '');
  const secrets = [...uncommented.matchAll(/\$\{([A-Z0-9_]*PASSWORD[A-Z0-9_]*)([^}]*)\}/g)];
  t.same([...new Set(secrets.map((m) => m[1]))].sort(), ['MYSQL_PASSWORD', 'MYSQL_ROOT_PASSWORD', 'REDIS_PASSWORD']);
  for (const [whole, , rest] of secrets) t.match(rest, /^:\?.+/, `${whole} is required (\${NAME:?message}), never defaulted`);
  const redis = services['redis']!;
  t.match(redis.command?.join(' '), /--requirepass \$\{REDIS_PASSWORD:\?/, 'redis-server requires the password');
  t.match(redis.environment?.['REDISCLI_AUTH'], /^\$\{REDIS_PASSWORD:\?/, 'its health check authenticates');
  for (const v of allVariables().filter((v) => /PASSWORD/.test(v.name) && v.usedBy.includes('docker compose'))) {
    t.equal(v.default, '', `.env.example leaves ${v.name} empty`);
  }
});

t.test('rembg instances get only their own variables', async (t) => {
  for (const name of ['rembg', 'rembg-1', 'rembg-2']) {
    const rembg = services[name]!;
    t.notOk(rembg.env_file, `${name} does not read .env (JWT_SECRET, database and storage credentials)`);
    for (const variable of Object.keys(rembg.environment ?? {})) t.match(variable, /^REMBG_/, `${name}: ${variable}`);
  }
});

t.test('mysql is 8.x with max_allowed_packet set and its data on a volume', async (t) => {
  const mysql = services['mysql']!;
  t.match(mysql.image, /^mysql:8(\.\d+)*$/);
  t.ok(mysql.command?.some((c) => /^--max[-_]allowed[-_]packet=\d+[KMG]?$/.test(c)));
  t.ok(mysql.volumes?.some((v) => v.endsWith(':/var/lib/mysql')));
  t.match(mysql.healthcheck?.test.join(' '), /mysqladmin ping/);
});

t.test('three rembg instances built from rembg/Dockerfile, reachable by the workers', async (t) => {
  const workerUrls = services['worker']?.environment?.['REMBG_URLS']?.split(',') ?? [];
  for (const name of ['rembg', 'rembg-1', 'rembg-2']) {
    const rembg = services[name]!;
    t.same(rembg.build, { context: '.', dockerfile: 'rembg/Dockerfile' }, `${name} is built from rembg/Dockerfile`);
    t.equal(rembg.environment?.['REMBG_HOST'], '0.0.0.0', `${name} listens beyond its container`);
    t.ok(workerUrls.includes(`http://${name}:${rembg.environment?.['REMBG_PORT']}`), `the workers' pool includes ${name}`);
    t.notOk(rembg.container_name, `${name} can be scaled or renamed`);
  }
  t.equal(workerUrls.length, 3);
});

t.test('migrations run once, before the API and the workers start', async (t) => {
  const migrate = services['migrate']!;
  t.same(migrate.command, ['node', 'dist/scripts/migrate.js']);
  t.equal(migrate.restart, 'no');
  t.equal(migrate.depends_on?.['mysql']?.condition, 'service_healthy');
  for (const name of ['api', 'worker']) {
    const service = services[name]!;
    t.equal(service.depends_on?.['migrate']?.condition, 'service_completed_successfully', `${name} waits for migrations`);
    t.equal(service.depends_on?.['redis']?.condition, 'service_healthy', `${name} waits for redis`);
    t.equal(service.depends_on?.['mysql']?.condition, 'service_healthy', `${name} waits for mysql`);
  }
});

t.test('the app services read .env, share storage and run commands the build produces', async (t) => {
  for (const name of ['migrate', 'api', 'worker']) {
    const service = services[name]!;
    t.ok(
      service.env_file?.some((e) => (typeof e === 'string' ? e : e.path) === '.env'),
      `${name} reads .env`,
    );
    t.same(service.build, { context: '.', dockerfile: 'Dockerfile' });
    const script = service.command?.[1] ?? '';
    t.match(script, /^dist\/.+\.js$/);
    t.ok(existsSync(root(script.replace(/^dist\//, '').replace(/\.js$/, '.ts'))), `${script} is compiled from a source file that exists`);
    t.match(service.environment?.['MYSQL_URL'], /@mysql:3306\//, `${name} reaches the mysql service`);
    t.equal(service.environment?.['REDIS_URL'], 'redis://:${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}@redis:6379', `${name} authenticates to Redis`);
  }
  for (const name of ['api', 'worker']) {
    t.ok(services[name]?.volumes?.includes('storage:/app/data/storage'), `${name} shares the storage volume`);
    t.equal(services[name]?.environment?.['STORAGE_LOCAL_DIR'], '/app/data/storage');
  }
  t.ok('storage' in compose.volumes && 'mysql-data' in compose.volumes && 'redis-data' in compose.volumes);
});

t.test('the worker scales with --scale worker=N', async (t) => {
  const worker = services['worker']!;
  t.notOk(worker.container_name, 'no fixed container name');
  t.notOk(worker.ports, 'no published host port');
  t.same(worker.expose, [worker.environment?.['WORKER_METRICS_PORT']], 'its /metrics port is exposed on the network only');
  t.equal(worker.environment?.['WORKER_METRICS_HOST'], '0.0.0.0');
  t.match(worker.healthcheck?.test.join(' '), new RegExp(`127\\.0\\.0\\.1:${worker.environment?.['WORKER_METRICS_PORT']}/healthz`));
  t.match(services['api']?.healthcheck?.test.join(' '), /127\.0\.0\.1:3000\/healthz/);
});

t.test('every variable the compose file reads is documented, with the same default', async (t) => {
  const declared = new Map(allVariables().map((v) => [v.name, v]));
  const uncommented = composeText.replace(/^\s*#.*$/gm, '');
  const used = [...uncommented.matchAll(/\$\{([A-Z0-9_]+)(?::-([^}]*))?\}/g)];
  t.ok(used.length >= 4);
  for (const [, name, def] of used) {
    const variable = declared.get(name!);
    t.ok(variable?.usedBy.includes('docker compose'), `${name} is declared for docker compose (scripts/compose-config.ts)`);
    // A default that is itself a variable (PUBLIC_BASE_URL: http://localhost:${PORT:-3000}) is the processes' own fallback
    // for an empty value, which the description names.
    const derived = def === undefined ? null : /^(.*)\$\{([A-Z0-9_]+):-(.*)$/.exec(def);
    if (derived) {
      t.equal(variable?.default, '', `${name} is empty by default`);
      t.ok(variable?.description.includes(`empty = ${derived[1]}<${derived[2]}>`), `${name}: the description names the fallback ${def}`);
      t.equal(declared.get(derived[2]!)?.default, derived[3], `${derived[2]} has the same default in both places`);
    } else if (def !== undefined) t.equal(def, variable?.default, `${name} has the same default in both places`);
  }
  for (const [serviceName, service] of Object.entries(services)) {
    // The rembg service's variables are declared with the service itself, when its schema is registered.
    if (serviceName.startsWith('rembg') && !CONFIG_SCHEMAS['rembg']) continue;
    for (const name of Object.keys(service.environment ?? {})) {
      if (/^MYSQL_(ROOT_PASSWORD|DATABASE|USER|PASSWORD)$/.test(name) || name === 'REDISCLI_AUTH') continue; // the mysql and redis images' own
      t.ok(declared.has(name), `${name} set in docker-compose.yml is a configuration variable`);
    }
  }
});

/** The stages of a Dockerfile: base image (ARGs resolved to their defaults) and instructions. */
function dockerStages(path: string): { from: string; lines: string[] }[] {
  const text = readFileSync(root(path), 'utf8').replace(/\\\n/g, ' ');
  const args = new Map<string, string>();
  const stages: { from: string; lines: string[] }[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const arg = /^ARG\s+([A-Za-z_]+)=(\S+)/.exec(line);
    if (arg && stages.length === 0) args.set(arg[1]!, arg[2]!);
    const from = /^FROM\s+(\S+)/i.exec(line);
    if (from) {
      const image = from[1]!.replace(/\$\{?([A-Za-z_]+)\}?/g, (_, n: string) => args.get(n) ?? '');
      const previous = stages.find((s) => s.lines[0]?.match(new RegExp(`\\sAS\\s+${image}$`, 'i')));
      stages.push({ from: previous?.from ?? image, lines: [line] });
    } else stages.at(-1)?.lines.push(line);
  }
  return stages;
}

function checkImage(t: Test, path: string) {
  const stages = dockerStages(path);
  t.ok(stages.length >= 2, `${path} is multi-stage`);
  for (const stage of stages) t.match(stage.from, /^node:22(\.\d+)*-[a-z]+-slim$/, `${path}: every stage is on a slim Node 22 base (${stage.from})`);
  for (const stage of stages.filter((s) => s.lines.some((l) => /^RUN npm ci\b/.test(l)))) {
    t.ok(
      stage.lines.some((l) => /^ENV\s+ONNXRUNTIME_NODE_INSTALL=skip\b/.test(l)),
      `${path}: ${stage.lines[0]} skips onnxruntime's GPU download (ONNXRUNTIME_NODE_INSTALL=skip)`,
    );
  }
  const last = stages.at(-1)!;
  const user = last.lines.filter((l) => /^USER\s/i.test(l)).at(-1);
  t.ok(user, `${path}: the runtime stage sets a user`);
  t.notMatch(user, /^USER\s+(root|0)(:|$)/i, `${path}: the runtime user is not root`);
  t.ok(
    last.lines.some((l) => /^CMD\s+\[/.test(l)),
    `${path}: the runtime stage has an exec-form CMD`,
  );
}

t.test('the API/worker image: multi-stage, slim Node 22, non-root, small context', async (t) => {
  checkImage(t, 'Dockerfile');
  const text = readFileSync(root('Dockerfile'), 'utf8');
  t.match(text, /RUN npm ci\b/, 'dependencies come from the lockfile');
  t.match(text, /RUN npm run build\b/, 'TypeScript is compiled in the image');
  t.match(text, /CMD \["node", "dist\/backend\/server\.js"\]/, 'the default command is the API');
  for (const copied of ['package.json', 'package-lock.json', 'tsconfig.build.json']) t.ok(existsSync(root(copied)), `${copied} exists`);
  const ignored = readFileSync(root('.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  for (const entry of ['node_modules', '.env', '.git', 'data', 'dist']) t.ok(ignored.includes(entry), `.dockerignore leaves out ${entry}`);
  for (const needed of ['package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'backend', 'worker', 'platform', 'jobs', 'db', 'scripts', 'web']) {
    t.notOk(ignored.includes(needed), `.dockerignore keeps ${needed}`);
  }
  // What the compiled processes read from disk besides dist/ and node_modules/ must be in the runtime stage.
  const runtime = dockerStages('Dockerfile').at(-1)!.lines.join('\n');
  t.match(runtime, /COPY --from=build .*\/app\/dist \.\/dist/, 'the compiled code');
  t.match(runtime, /COPY --from=build .*\/app\/web \.\/web/, "the dashboard's static files (backend/routes/dashboard serves web/ beside dist/)");
});

t.test(
  'the rembg image follows the same rules',
  { skip: existsSync(root('rembg/Dockerfile')) ? false : 'rembg/Dockerfile is not in this checkout yet (the rembg service brings it)' },
  async (t) => {
    checkImage(t, 'rembg/Dockerfile');
  },
);

/** The npm packages a TypeScript entry point loads, following its relative imports (type-only ones are erased). */
function packagesImportedBy(entries: string[]): Set<string> {
  const packages = new Set<string>();
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const [statement, spec] of text.matchAll(/^\s*(?:import|export)\s+(?!type\s)[^'";]*?from\s+'([^']+)'|\bimport\(\s*'([^']+)'\s*\)/gm)) {
      const specifier = spec ?? /'([^']+)'/.exec(statement)![1]!;
      if (specifier.startsWith('.')) visit(fileURLToPath(new URL(specifier.replace(/\.js$/, '.ts'), `file://${file}`)));
      else if (!specifier.startsWith('node:'))
        packages.add(
          specifier
            .split('/')
            .slice(0, specifier.startsWith('@') ? 2 : 1)
            .join('/'),
        );
    }
    // createRequire(...)('pkg') and require.resolve('pkg/…') load packages too
    for (const [, spec] of text.matchAll(/\brequire(?:\.resolve)?\(\s*'([^'.][^']*)'/g)) {
      packages.add(
        spec!
          .split('/')
          .slice(0, spec!.startsWith('@') ? 2 : 1)
          .join('/'),
      );
    }
  };
  for (const entry of entries) visit(root(entry));
  return packages;
}

t.test('the rembg image leaves out only packages the service never loads, and has every one it does', async (t) => {
  const text = readFileSync(root('rembg/Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const removed =
    /npm uninstall --no-save((?:\s+(?:--[a-z-]+|@?[a-z0-9./-]+))+)/
      .exec(text)?.[1]
      ?.split(/\s+/)
      .filter((w) => w && !w.startsWith('--')) ?? [];
  t.ok(removed.includes('@vladmandic/face-api') && removed.includes('@tensorflow/tfjs'), "the worker's face detection is not shipped");
  const loaded = packagesImportedBy(['rembg/server.ts', 'rembg/inference-thread.ts', 'rembg/pixel-thread.ts']);
  t.ok(loaded.has('onnxruntime-node') && loaded.has('sharp'), `the import walk finds the service's packages (${[...loaded].join(', ')})`);
  const dependencies = (JSON.parse(readFileSync(root('package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies;
  for (const name of loaded) {
    t.notOk(removed.includes(name), `${name} is loaded by the service, so the image keeps it`);
    t.ok(name in dependencies, `${name} is a production dependency (the image installs --omit=dev)`);
  }
});
