import t from 'tap';
import { createVerifier } from 'fast-jwt';
import type { FastifyInstance } from 'fastify';
import { isolatedEnv, TEST_JWT_SECRET } from './helpers/env.js';
import { listeningApp, testApp, testVendor, type TestVendor } from './helpers/app.js';
import { openSse } from './helpers/sse.js';

/**
 * Browser tokens (issue 19): the vendor's backend exchanges its API key for
 * a short-lived token with `scope`, `projectId` and `expiresIn`; the API
 * holds the token to its scopes and its project on every route, and its
 * requests count against the vendor's limits like any other.
 */
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function mint(app: FastifyInstance, vendor: TestVendor, extra: Record<string, unknown>) {
  return app.inject({ method: 'POST', url: '/api/auth/token', payload: { apiKey: vendor.apiKey, ...extra } });
}

async function browserToken(app: FastifyInstance, vendor: TestVendor, extra: Record<string, unknown>): Promise<string> {
  const res = await mint(app, vendor, extra);
  if (res.statusCode !== 200) throw new Error(`mint failed: ${res.statusCode} ${res.body}`);
  return (res.json() as { token: string }).token;
}

function enqueue(app: FastifyInstance, token: string, projectId: string, recordId: string, headers: Record<string, string> = {}) {
  return app.inject({
    method: 'POST',
    url: '/api/image-queue/remove-bg-queue',
    headers: { ...bearer(token), ...headers },
    payload: { projectId, recordId, photoUrl: 'https://example.com/a.png' },
  });
}

t.test('minting: scope, projectId and expiresIn, with a clear 400 for each bad value', async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent' });
  const app = await testApp(t, env);
  const vendor = await testVendor(app);
  const verify = createVerifier({ key: TEST_JWT_SECRET, algorithms: ['HS256'] });

  const full = await mint(app, vendor, {});
  t.equal(full.statusCode, 200);
  t.match(full.json(), { scope: null, projectId: null, expiresIn: 3600 }, 'no restriction: the full vendor token of before');
  t.notOk(verify(full.json().token).scope, 'which carries no scope claim');

  const listed = await mint(app, vendor, { scope: ['jobs:read', 'jobs:write', 'jobs:read'], expiresIn: 600 });
  t.equal(listed.statusCode, 200, listed.body);
  t.match(listed.json(), { scope: 'jobs:read jobs:write', projectId: null, expiresIn: 600 });
  const claims = verify(listed.json().token) as { scope: string; exp: number; iat: number };
  t.equal(claims.scope, 'jobs:read jobs:write');
  t.equal(claims.exp - claims.iat, 600, 'expiresIn is the lifetime signed into the token');

  const spaced = await mint(app, vendor, { scope: 'jobs:read persons:read', projectId: 'site-1' });
  t.equal(spaced.statusCode, 200, spaced.body);
  t.match(
    spaced.json(),
    { scope: 'jobs:read persons:read', projectId: 'site-1', expiresIn: 3600 },
    'a space-separated string; a browser token lives an hour at most',
  );
  t.equal((verify(spaced.json().token) as { pid: string }).pid, 'site-1');

  const projectOnly = await mint(app, vendor, { projectId: 'site-1' });
  t.match(projectOnly.json(), { scope: 'jobs:read jobs:write persons:read', projectId: 'site-1' }, 'a project token without scope gets the per-project scopes');

  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['unknown scope', { scope: 'jobs:read admin' }, /body\/scope .*unknown scope "admin"/],
    ['empty scope', { scope: ' ' }, /body\/scope must name at least one/],
    ['empty scope list', { scope: [] }, /body\/scope must name at least one/],
    ['scoped token past an hour', { scope: 'jobs:read', expiresIn: 3601 }, /body\/expiresIn must be at most 3600/],
    ['project token past an hour', { projectId: 'p', expiresIn: 7200 }, /body\/expiresIn must be at most 3600/],
    ['full token past JWT_EXPIRES', { expiresIn: 3601 }, /body\/expiresIn must be at most 3600.*JWT_EXPIRES/],
    ['zero expiresIn', { expiresIn: 0 }, /expiresIn/],
    ['non-numeric expiresIn', { expiresIn: 'soon' }, /expiresIn/],
    ['webhooks on a project token', { projectId: 'p', scope: 'jobs:read webhooks:write' }, /webhooks:write cover the whole vendor/],
    ['a projectId that names a path', { projectId: '../other' }, /projectId/],
    ['an unknown field', { scopes: 'jobs:read' }, /scopes|additional/],
  ];
  for (const [name, body, message] of bad) {
    const res = await mint(app, vendor, body);
    t.equal(res.statusCode, 400, `${name}: 400`);
    t.match(res.json().message, message, `${name}: ${res.json().message}`);
  }
  const wrongKey = await app.inject({ method: 'POST', url: '/api/auth/token', payload: { apiKey: 'iq_live_nope', scope: 'jobs:read' } });
  t.equal(wrongKey.statusCode, 401, 'a scope does not stand in for the key');
});

t.test('scopes: a read-only token reads and is refused every write', async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent' });
  const app = await testApp(t, env);
  const vendor = await testVendor(app);
  const queued = await enqueue(app, vendor.token, 'p', 'r1');
  t.equal(queued.statusCode, 202, queued.body);
  const jobId = queued.json().jobId as string;
  const readOnly = await browserToken(app, vendor, { scope: 'jobs:read' });

  t.equal((await app.inject({ url: `/api/image-queue/job/${jobId}`, headers: bearer(readOnly) })).statusCode, 200, 'reads a job');
  t.equal((await app.inject({ url: '/api/image-queue/jobs', headers: bearer(readOnly) })).statusCode, 200, 'lists jobs');
  const writes = [
    { method: 'POST', url: '/api/image-queue/remove-bg-queue', payload: { projectId: 'p', recordId: 'r2', photoUrl: 'https://example.com/a.png' } },
    { method: 'POST', url: '/api/image-queue/bulk-remove-bg', payload: { projectId: 'p', items: [{ recordId: 'r3', photoUrl: 'https://example.com/a.png' }] } },
    { method: 'POST', url: `/api/image-queue/job/${jobId}/cancel` },
    { method: 'POST', url: `/api/image-queue/job/${jobId}/retry` },
    { method: 'DELETE', url: `/api/image-queue/job/${jobId}` },
    { method: 'PUT', url: '/api/webhooks/', payload: { webhookUrl: 'https://example.com/hook' } },
    { method: 'DELETE', url: '/api/webhooks/' },
  ] as const;
  for (const write of writes) {
    const res = await app.inject({ ...write, headers: bearer(readOnly), ...(write.method === 'POST' && !('payload' in write) ? { payload: {} } : {}) });
    t.equal(res.statusCode, 403, `${write.method} ${write.url}: 403`);
    t.match(res.json().message, /lacks the scope (jobs|webhooks):write/);
  }
  const still = await app.inject({ url: `/api/image-queue/job/${jobId}`, headers: vendor.auth });
  t.equal(still.json().state, 'queued', 'and the job was not touched');
  t.equal((await app.inject({ url: '/api/webhooks/', headers: bearer(readOnly) })).statusCode, 403, 'nor reads what it has no scope for');
  t.equal((await app.inject({ url: '/api/persons', headers: bearer(readOnly) })).statusCode, 403);
});

t.test('projectId: a project token enqueues into and sees its own project only', async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent' });
  const app = await testApp(t, env);
  const vendor = await testVendor(app);
  const admin = await testVendor(app, { role: 'admin' });
  const mine = await browserToken(app, vendor, { projectId: 'site-a' });

  // Another project's job and batch, queued with the full token.
  const other = await enqueue(app, vendor.token, 'site-b', 'b1', { 'idempotency-key': 'other-1' });
  t.equal(other.statusCode, 202, other.body);
  const otherJob = other.json().jobId as string;
  const otherBulk = await app.inject({
    method: 'POST',
    url: '/api/image-queue/bulk-remove-bg',
    headers: vendor.auth,
    payload: { projectId: 'site-b', items: [{ recordId: 'b2', photoUrl: 'https://example.com/a.png' }] },
  });
  t.equal(otherBulk.statusCode, 202, otherBulk.body);
  const otherBatch = otherBulk.json().batchId as string;

  await t.test('enqueue into another project: 403 naming both', async (t) => {
    const single = await enqueue(app, mine, 'site-b', 'x1');
    t.equal(single.statusCode, 403);
    t.match(single.json().message, /restricted to project "site-a"; body\/projectId names "site-b"/);
    const bulk = await app.inject({
      method: 'POST',
      url: '/api/image-queue/bulk-remove-bg',
      headers: bearer(mine),
      payload: { projectId: 'site-b', items: [{ recordId: 'x2', photoUrl: 'https://example.com/a.png' }] },
    });
    t.equal(bulk.statusCode, 403);
    const replay = await enqueue(app, mine, 'site-b', 'b1', { 'idempotency-key': 'other-1' });
    t.equal(replay.statusCode, 403, "an Idempotency-Key cannot replay another project's answer");
    t.notMatch(replay.body, otherJob);
  });

  const own = await enqueue(app, mine, 'site-a', 'a1');
  t.equal(own.statusCode, 202, own.body);
  const ownJob = own.json().jobId as string;
  const ownBulk = await app.inject({
    method: 'POST',
    url: '/api/image-queue/bulk-remove-bg',
    headers: bearer(mine),
    payload: { projectId: 'site-a', items: [{ recordId: 'a2', photoUrl: 'https://example.com/a.png' }] },
  });
  t.equal(ownBulk.statusCode, 202, ownBulk.body);
  const ownBatch = ownBulk.json().batchId as string;

  await t.test("reads: another project's job and batch are not found", async (t) => {
    const missing = await app.inject({ url: '/api/image-queue/job/01ARZ3NDEKTSV4RRFFQ69G5FAV', headers: bearer(mine) });
    const foreign = await app.inject({ url: `/api/image-queue/job/${otherJob}`, headers: bearer(mine) });
    t.equal(foreign.statusCode, 404);
    t.equal(foreign.json().message, missing.json().message, 'exactly as an id that does not exist');
    const waited = await app.inject({ url: `/api/image-queue/job/${otherJob}?wait=20`, headers: bearer(mine) });
    t.equal(waited.statusCode, 404, 'a long-poll on it answers 404 at once');
    t.equal((await app.inject({ url: `/api/image-queue/job/${ownJob}`, headers: bearer(mine) })).statusCode, 200);
    t.equal((await app.inject({ url: `/api/image-queue/batch/${otherBatch}`, headers: bearer(mine) })).statusCode, 404);
    t.equal((await app.inject({ url: `/api/image-queue/batch/${otherBatch}?wait=20`, headers: bearer(mine) })).statusCode, 404);
    t.equal((await app.inject({ url: `/api/image-queue/batch/${ownBatch}`, headers: bearer(mine) })).statusCode, 200);
    t.equal((await app.inject({ url: `/api/image-queue/jobs?batchId=${otherBatch}`, headers: bearer(mine) })).statusCode, 404);

    const list = await app.inject({ url: '/api/image-queue/jobs', headers: bearer(mine) });
    const projects = (list.json().jobs as { data: { projectId: string } }[]).map((j) => j.data.projectId);
    t.same(projects, ['site-a', 'site-a'], 'the list holds its project only');
    const everything = await app.inject({ url: '/api/image-queue/jobs', headers: vendor.auth });
    t.equal(everything.json().jobs.length, 4, 'while the full token sees all four');

    const stats = await app.inject({ url: '/api/image-queue/queue-stats', headers: bearer(mine) });
    const fullStats = await app.inject({ url: '/api/image-queue/queue-stats', headers: vendor.auth });
    t.equal(stats.statusCode, 200);
    t.equal(countQueued(stats.json()), 2, `stats count its project's 2 jobs: ${stats.body}`);
    t.equal(countQueued(fullStats.json()), 4, 'the full token counts 4');
  });

  await t.test("controls: another project's job and batch are not found", async (t) => {
    for (const [method, url] of [
      ['POST', `/api/image-queue/job/${otherJob}/cancel`],
      ['POST', `/api/image-queue/job/${otherJob}/retry`],
      ['DELETE', `/api/image-queue/job/${otherJob}`],
      ['POST', `/api/image-queue/batch/${otherBatch}/cancel`],
      ['POST', `/api/image-queue/batch/${otherBatch}/retry`],
      ['DELETE', `/api/image-queue/batch/${otherBatch}`],
    ] as const) {
      const res = await app.inject({ method, url, headers: bearer(mine), ...(method === 'POST' ? { payload: {} } : {}) });
      t.equal(res.statusCode, 404, `${method} ${url}: ${res.body}`);
    }
    const after = await app.inject({ url: `/api/image-queue/job/${otherJob}`, headers: vendor.auth });
    t.equal(after.json().state, 'queued', 'untouched');
    const cancel = await app.inject({ method: 'POST', url: `/api/image-queue/job/${ownJob}/cancel`, headers: bearer(mine), payload: {} });
    t.equal(cancel.statusCode, 200, "its own project's job it controls");
  });

  await t.test('persons: only its project, and a filter naming another is refused', async (t) => {
    const list = await app.inject({ url: '/api/persons', headers: bearer(mine) });
    t.equal(list.statusCode, 200);
    t.same(list.json().persons, []);
    const filtered = await app.inject({ url: '/api/persons/01ARZ3NDEKTSV4RRFFQ69G5FAV/records?projectId=site-b', headers: bearer(mine) });
    t.equal(filtered.statusCode, 403);
    t.match(filtered.json().message, /restricted to project "site-a"; querystring\/projectId names "site-b"/);
  });

  await t.test('admin routes refuse a project token even of an admin', async (t) => {
    const adminProject = await browserToken(app, admin, { projectId: 'site-a' });
    const res = await app.inject({ url: '/api/admin/queues', headers: bearer(adminProject) });
    t.equal(res.statusCode, 403);
    const stats = await app.inject({ url: '/api/image-queue/queue-stats', headers: bearer(adminProject) });
    t.equal(countQueued(stats.json()), 0, "nor does it see every vendor's counts");
  });
});

t.test("projectId: a project token's event stream carries its project's events only", async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent' });
  const { app, url } = await listeningApp(t, env);
  const vendor = await testVendor(app);
  const mine = await browserToken(app, vendor, { projectId: 'site-a', scope: 'jobs:read' });
  const stream = await openSse(t, `${url}/api/image-queue/events`, bearer(mine));
  t.equal(stream.status, 200);
  await stream.next((m) => m.event === 'ready');
  const other = await enqueue(app, vendor.token, 'site-b', 'b1');
  const own = await enqueue(app, vendor.token, 'site-a', 'a1');
  const ownJob = own.json().jobId as string;
  const queued = await stream.next((m) => m.event === 'queued');
  t.equal(JSON.parse(queued.data).jobId, ownJob, "the first event it gets is its own project's, although the other came first");
  t.notOk(
    stream.messages.some((m) => m.data.includes(other.json().jobId as string)),
    "and nothing of the other project's",
  );
  stream.close();
});

t.test("rate limits count per vendor, whichever of the vendor's tokens calls", async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent', RATE_LIMIT_POLLING_MAX: '6', RATE_LIMIT_POLLING_WINDOW_MS: '60000' });
  const app = await testApp(t, env);
  const vendor = await testVendor(app, { plan: 'standard' });
  const neighbour = await testVendor(app, { plan: 'standard' });
  const tokens = [
    vendor.token,
    await browserToken(app, vendor, { scope: 'jobs:read' }),
    await browserToken(app, vendor, { scope: 'jobs:read', projectId: 'a' }),
    await browserToken(app, vendor, { projectId: 'b' }),
  ];
  const codes: number[] = [];
  for (let i = 0; i < 8; i++) {
    codes.push((await app.inject({ url: '/api/image-queue/jobs', headers: bearer(tokens[i % tokens.length] as string) })).statusCode);
  }
  t.same(codes, [200, 200, 200, 200, 200, 200, 429, 429], 'six across four tokens, then the vendor is limited');
  const fresh = await browserToken(app, vendor, { scope: 'jobs:read' });
  t.equal((await app.inject({ url: '/api/image-queue/jobs', headers: bearer(fresh) })).statusCode, 429, 'a new token does not reset the count');
  t.equal((await app.inject({ url: '/api/image-queue/jobs', headers: neighbour.auth })).statusCode, 200, 'another vendor counts apart');
});

/** Waiting jobs in a queue-stats answer (the ledger's counts), over every kind. */
function countQueued(stats: Record<string, unknown>): number {
  let total = 0;
  for (const [key, value] of Object.entries(stats)) {
    if (key === 'vendors' || !value || typeof value !== 'object') continue;
    total += Number((value as { waiting?: number }).waiting ?? 0);
  }
  return total;
}
