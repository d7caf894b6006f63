import t from 'tap';
import { readFile } from 'node:fs/promises';
import type { RouteOptions } from 'fastify';
import { buildApp } from '../backend/app.js';
import { loadApiConfig } from '../backend/config.js';
import { isolatedEnv } from './helpers/env.js';

/**
 * docs/api.md's endpoint table names every route the API serves: a route
 * added without its row fails here. A row lists methods ("GET, PATCH") and
 * paths in backticks (query strings ignored); a path ending in "/…" covers
 * everything under it (Bull Board, Swagger UI, the dashboard's files).
 * HEAD routes are Fastify's automatic twins of GET ones.
 */
interface Row {
  methods: string[];
  paths: string[];
}

function endpointRows(doc: string): Row[] {
  const section = doc.slice(doc.indexOf('## Endpoints'), doc.indexOf('\n## ', doc.indexOf('## Endpoints') + 1));
  return section
    .split('\n')
    .map((line) => line.split('|').map((cell) => cell.trim()))
    .filter((cells) => /^[A-Z]+(, [A-Z]+)*$/.test(cells[1] ?? ''))
    .map((cells) => ({
      methods: cells[1]!.split(', '),
      paths: [...cells[2]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!.replace(/\?.*$/, '')),
    }));
}

function documented(rows: Row[], method: string, url: string): boolean {
  const path = url.replace(/\/\*$/, '/…').replace(/\/$/, '');
  return rows.some((row) => row.methods.includes(method) && row.paths.some((p) => p === path || (p.endsWith('/…') && (path + '/').startsWith(p.slice(0, -1)))));
}

t.test('every route of the API has a row in docs/api.md', async (t) => {
  const env = await isolatedEnv(t);
  const routes: { method: string; url: string }[] = [];
  const app = await buildApp(loadApiConfig({ env, processEnv: false }), {
    logger: false,
    onRoute: (route: RouteOptions) => {
      for (const method of [route.method].flat()) routes.push({ method, url: route.url });
    },
  });
  t.teardown(() => app.close());
  await app.ready();
  const rows = endpointRows(await readFile(new URL('../docs/api.md', import.meta.url), 'utf8'));
  t.ok(rows.length > 20, `the endpoint table is found (${rows.length} rows)`);
  const served = routes.filter((r) => r.method !== 'HEAD');
  t.ok(
    served.some((r) => r.url === '/api/image-queue/process-queue'),
    'the routes are collected',
  );
  const missing = served.filter((r) => !documented(rows, r.method, r.url)).map((r) => `${r.method} ${r.url}`);
  t.same([...new Set(missing)], [], 'routes without a row in docs/api.md');
  // and no row names a route that is gone (each path is served by one of its row's methods at least)
  for (const row of rows) {
    for (const path of row.paths) {
      const exists = served.some((r) => row.methods.includes(r.method) && documented([{ methods: row.methods, paths: [path] }], r.method, r.url));
      t.ok(exists, `${path} in docs/api.md is served`);
    }
  }
});
