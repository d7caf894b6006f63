import fc from 'fast-check';
import type { FastifyInstance, LightMyRequestResponse, RouteOptions } from 'fastify';
import { buildApp } from '../../backend/app.js';
import { loadApiConfig } from '../../backend/config.js';
import type { TestEnv } from './env.js';

/**
 * Property-based fuzzing of every route the API registers (collected with
 * buildApp's onRoute, so a route added later is fuzzed without touching the
 * test). Requests are drawn half from the route's own JSON schema (mostly
 * valid values, so the handlers' own checks run, with a wrong value spliced
 * in here and there) and half from plain noise: wrong types, huge strings,
 * deep nesting, unicode, empty and enormous arrays, odd headers and queries.
 * The property: a 4xx (or 2xx) with the usual JSON error body, never a 5xx,
 * never a hang.
 */
export interface FuzzRoute {
  method: string;
  url: string;
  schema: RouteOptions['schema'];
}

export async function fuzzableApp(env: TestEnv, logger: boolean | object = false): Promise<{ app: FastifyInstance; routes: FuzzRoute[] }> {
  const routes: FuzzRoute[] = [];
  const app = await buildApp(loadApiConfig({ env, processEnv: false }), {
    logger,
    onRoute: (route) => {
      for (const method of [route.method].flat()) if (method !== 'HEAD') routes.push({ method, url: route.url, schema: route.schema });
    },
  });
  await app.ready();
  return { app, routes };
}

export interface FuzzRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  payload?: string | Buffer;
}

export interface Credentials {
  vendor: string;
  admin: string;
  /** ids that exist, so the fuzzer also hits found rows */
  knownIds: string[];
}

/** Strings that have broken parsers, loggers and SQL before. */
const NASTY = [
  '',
  ' ',
  '\u0000',
  '%',
  '%00',
  '%zz',
  '../../etc/passwd',
  "' OR 1=1 --",
  '"; DROP TABLE jobs; --',
  '__proto__',
  'constructor',
  '{"$gt":""}',
  '🤖🧨',
  '\u202e\u0301ǅ',
  'ﾟ･✿ヾ╲(｡◕‿◕｡)╱✿･ﾟ',
  'http://127.0.0.1/a.jpg',
  'http://169.254.169.254/latest/meta-data',
  'file:///etc/passwd',
  'gopher://example.com/',
  'javascript:alert(1)',
  'data:image/png;base64,AAAA',
  'https://images.example.com/a.jpg',
  '01ARZ3NDEKTSV4RRFFQ69G5FAV',
  '-1',
  '1e309',
  'NaN',
  'true',
  'null',
  '[]',
  '{}',
  'x'.repeat(300),
];

const nastyString = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...NASTY) },
  { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 200_000 }).map((n) => 'a'.repeat(n)) },
);

function deeplyNested(depth: number): unknown {
  let value: unknown = 'deep';
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? [value] : { a: value };
  return value;
}

/** Any JSON value, weighted towards the shapes that break code: wrong types, huge, deep, empty. */
export const noise: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 2, arbitrary: nastyString },
  { weight: 1, arbitrary: fc.constantFrom(null, true, false, 0, -1, 2 ** 53, -(2 ** 31), 1.5, 1e308, [], {}) },
  { weight: 1, arbitrary: fc.integer({ min: 50, max: 1000 }).map(deeplyNested) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 12_000 }).map((n) => Array.from({ length: n }, (_, i) => `r-${i}`)) },
  { weight: 1, arbitrary: fc.dictionary(nastyString, fc.jsonValue({ maxDepth: 1 }), { maxKeys: 5 }) },
);

type JsonSchema = Record<string, unknown>;

/**
 * Values drawn from a JSON schema (TypeBox output): right-typed and in range
 * most of the time, so requests get past validation into the handlers, with
 * noise spliced in at any level.
 */
export function fromSchema(schema: unknown, depth = 0): fc.Arbitrary<unknown> {
  const own = schemaValue(schema as JsonSchema | undefined, depth);
  return fc.oneof({ weight: 15, arbitrary: own }, { weight: 1, arbitrary: noise });
}

function schemaValue(schema: JsonSchema | undefined, depth: number): fc.Arbitrary<unknown> {
  if (!schema || typeof schema !== 'object' || depth > 6) return noise;
  if (Array.isArray(schema['enum'])) return fc.constantFrom(...(schema['enum'] as unknown[]));
  if ('const' in schema) return fc.constant(schema['const']);
  for (const key of ['anyOf', 'oneOf'] as const) {
    const members = schema[key];
    if (Array.isArray(members) && members.length > 0) return fc.oneof(...members.map((m) => fromSchema(m, depth + 1)));
  }
  if (Array.isArray(schema['allOf'])) return fromSchema((schema['allOf'] as unknown[])[0], depth + 1);
  switch (schema['type']) {
    case 'string':
      return stringFor(schema);
    case 'integer':
    case 'number': {
      const min = typeof schema['minimum'] === 'number' ? schema['minimum'] : -1000;
      const max = typeof schema['maximum'] === 'number' ? schema['maximum'] : 10_000;
      const inRange = schema['type'] === 'integer' ? fc.integer({ min: Math.ceil(min), max: Math.floor(max) }) : fc.double({ min, max, noNaN: true });
      return fc.oneof({ weight: 4, arbitrary: inRange }, { weight: 1, arbitrary: fc.constantFrom(min - 1, max + 1, 0, -0.5) });
    }
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array': {
      const minLength = typeof schema['minItems'] === 'number' ? schema['minItems'] : 0;
      return fc.array(fromSchema(schema['items'], depth + 1), { minLength, maxLength: Math.max(minLength, 4) });
    }
    case 'object': {
      const properties = (schema['properties'] ?? {}) as Record<string, unknown>;
      const required = new Set((schema['required'] ?? []) as string[]);
      const shape = Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, fromSchema(v, depth + 1)]));
      const keys = Object.keys(shape);
      if (keys.length === 0) return fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 });
      return fc.record(shape, { requiredKeys: keys.filter((k) => required.has(k)) });
    }
    default:
      return noise;
  }
}

function stringFor(schema: JsonSchema): fc.Arbitrary<string> {
  const min = typeof schema['minLength'] === 'number' ? schema['minLength'] : 0;
  const max = typeof schema['maxLength'] === 'number' ? Math.min(schema['maxLength'], 64) : 64;
  const plain = fc.string({ minLength: min, maxLength: Math.max(min, max) });
  const description = String(schema['description'] ?? '');
  if (/url/i.test(description) || schema['format'] === 'uri') {
    return fc.oneof(fc.webUrl(), fc.constantFrom('https://images.example.com/a.jpg', 'http://10.0.0.1/x.jpg', 'ftp://example.com/a', 'http://[::1]/'), plain);
  }
  if (schema['format'] === 'date-time')
    return fc.oneof(
      fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
      plain,
    );
  return fc.oneof({ weight: 4, arbitrary: plain }, { weight: 1, arbitrary: nastyString });
}

/** The JSON body schema of a route, whichever way it was declared. */
function bodySchema(route: FuzzRoute): unknown {
  const body = (route.schema as { body?: Record<string, unknown> } | undefined)?.body;
  const content = body?.['content'] as Record<string, { schema: unknown }> | undefined;
  return content?.['application/json']?.schema ?? body;
}

function querySchema(route: FuzzRoute): unknown {
  return (route.schema as { querystring?: unknown } | undefined)?.querystring;
}

const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=xyz',
  'multipart/form-data',
  'image/jpeg',
  'application/octet-stream',
  'application/json; charset=latin1',
  ';;;',
];

/** A header value Node would send: visible latin1, no CR/LF. */
const headerValue = fc.oneof(
  fc.constantFrom(...NASTY.filter((s) => /^[\x20-\x7e]*$/.test(s))),
  fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 60 }),
  fc.integer({ min: 1000, max: 8000 }).map((n) => 'k'.repeat(n)),
);

function authHeader(creds: Credentials): fc.Arbitrary<string | undefined> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constant(`Bearer ${creds.vendor}`) },
    { weight: 2, arbitrary: fc.constant(`Bearer ${creds.admin}`) },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: headerValue.map((v) => `Bearer ${v}`) },
    { weight: 1, arbitrary: headerValue },
  );
}

function pathFor(route: FuzzRoute, creds: Credentials): fc.Arbitrary<string> {
  const segments = route.url.split('/').map((part) => {
    if (part.startsWith(':')) return fc.oneof(fc.constantFrom(...creds.knownIds, 'image-processing', 'face-crop'), nastyString).map(encodeURIComponent);
    if (part === '*') return fc.oneof(fc.constant('index.html'), nastyString.map(encodeURIComponent));
    return fc.constant(part);
  });
  return fc.tuple(...segments).map((parts) => parts.join('/'));
}

function queryFor(route: FuzzRoute): fc.Arbitrary<string> {
  const schema = querySchema(route);
  const known = fc.option(fromSchema(schema), { nil: undefined });
  const extra = fc.dictionary(
    fc.oneof(fc.constantFrom('limit', 'cursor', 'status', 'kind', 'batchId', 'queue', 'projectId'), fc.string({ maxLength: 10 })),
    fc.oneof(nastyString, fc.array(nastyString, { maxLength: 3 })),
    { maxKeys: 4 },
  );
  const raw = fc.constantFrom('', '?', '?&&=', '?limit=%', '?limit=1&limit=2', '?a[b][c]=1', '?__proto__[x]=1', '?status=queued&status=nope');
  return fc.oneof(
    fc.tuple(known, extra).map(([k, e]) => {
      const params = new URLSearchParams();
      const add = (key: string, value: unknown) => {
        for (const v of [value].flat()) params.append(key, typeof v === 'string' ? v : (JSON.stringify(v) ?? ''));
      };
      if (k && typeof k === 'object' && !Array.isArray(k)) for (const [key, value] of Object.entries(k)) add(key, value);
      for (const [key, value] of Object.entries(e)) add(key, value);
      const text = params.toString();
      return text ? `?${text}` : '';
    }),
    raw,
  );
}

function payloadFor(route: FuzzRoute): fc.Arbitrary<{ contentType: string | undefined; payload: string | Buffer | undefined }> {
  const json = fc.oneof({ weight: 3, arbitrary: fromSchema(bodySchema(route)) }, { weight: 1, arbitrary: noise }).map((v) => JSON.stringify(v) ?? 'null');
  // nesting deeper than JSON.stringify can write, as text
  const abyss = fc.integer({ min: 2000, max: 50_000 }).map((n) => `${'[{"a":'.repeat(n)}0${'}]'.repeat(n)}`);
  const broken = fc.constantFrom('{"broken', '{"a":1}{"b":2}', '\u0000', '', '{"__proto__":{"admin":true}}', '{"constructor":{"prototype":{"x":1}}}', 'NaN');
  const multipart = fc
    .string({ maxLength: 200 })
    .map((s) => `--xyz\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n\r\n${s}\r\n--xyz--\r\n`);
  return fc.oneof(
    { weight: 5, arbitrary: json.map((payload) => ({ contentType: 'application/json', payload })) },
    { weight: 1, arbitrary: fc.oneof(broken, abyss).map((payload) => ({ contentType: 'application/json', payload })) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...CONTENT_TYPES), json).map(([contentType, payload]) => ({ contentType, payload })) },
    { weight: 1, arbitrary: multipart.map((payload) => ({ contentType: 'multipart/form-data; boundary=xyz', payload })) },
    { weight: 1, arbitrary: fc.constant({ contentType: undefined, payload: undefined }) },
  );
}

/** Requests for one route: its method, a path with fuzzed params, a query, headers and (for bodies) a payload. */
export function requestsFor(route: FuzzRoute, creds: Credentials): fc.Arbitrary<FuzzRequest> {
  const extraHeaders = fc.record(
    {
      'idempotency-key': headerValue,
      'x-request-id': headerValue,
      accept: fc.constantFrom('application/json', 'text/html', '*/*', 'image/*', 'text/event-stream'),
      'accept-encoding': fc.constantFrom('gzip', 'br', 'identity', 'x'),
      'x-forwarded-for': fc.constantFrom('1.2.3.4', 'garbage', '127.0.0.1, 10.0.0.1'),
    },
    { requiredKeys: [] },
  );
  const hasBody = route.method === 'POST' || route.method === 'PATCH' || route.method === 'PUT';
  return fc
    .tuple(
      pathFor(route, creds),
      queryFor(route),
      authHeader(creds),
      extraHeaders,
      hasBody ? payloadFor(route) : fc.constant({ contentType: undefined, payload: undefined }),
    )
    .map(([path, query, auth, extra, body]) => {
      const headers: Record<string, string> = { ...extra };
      if (auth !== undefined) headers['authorization'] = auth;
      if (body.contentType !== undefined) headers['content-type'] = body.contentType;
      return { method: route.method, url: `${path}${query}`, headers, ...(body.payload !== undefined ? { payload: body.payload } : {}) };
    });
}

export interface FuzzOutcome {
  statusCode: number;
  ms: number;
  problem: string | null;
}

/**
 * Sends one request with a deadline and says what is wrong with the answer,
 * if anything: a 5xx, no JSON error body on a 4xx, or no answer in time.
 */
export async function sendAndJudge(app: FastifyInstance, request: FuzzRequest, deadlineMs: number): Promise<FuzzOutcome> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'hang'>((resolve) => (timer = setTimeout(() => resolve('hang'), deadlineMs)));
  // Streamed: an event stream (GET /api/image-queue/events) answers with its
  // headers and then never ends, which is its job; anything else is read whole.
  const streamed = Promise.race([
    app.inject({ method: request.method as 'GET', url: request.url, headers: request.headers, payload: request.payload, payloadAsStream: true }),
    deadline,
  ]);
  const head = await streamed;
  if (head !== 'hang' && String(head.headers['content-type']).startsWith('text/event-stream') && head.statusCode === 200) {
    clearTimeout(timer);
    head.stream().destroy();
    return { statusCode: 200, ms: performance.now() - started, problem: null };
  }
  const res = head === 'hang' ? head : await Promise.race([readWhole(head), deadline]);
  clearTimeout(timer);
  const ms = performance.now() - started;
  if (res === 'hang') return { statusCode: 0, ms, problem: `no answer within ${deadlineMs} ms` };
  if (res.statusCode === 503 && isHealthVerdict(request, res.body)) return { statusCode: res.statusCode, ms, problem: null };
  if (res.statusCode >= 500) return { statusCode: res.statusCode, ms, problem: `${res.statusCode}: ${res.body.slice(0, 300)}` };
  if (res.statusCode === 401 && isBoardLogin(request, res)) return { statusCode: res.statusCode, ms, problem: null };
  if (res.statusCode >= 400) {
    let body: { statusCode?: unknown; code?: unknown; message?: unknown } | undefined;
    try {
      body = res.json() as typeof body;
    } catch {
      return { statusCode: res.statusCode, ms, problem: `${res.statusCode} without a JSON body: ${res.body.slice(0, 200)}` };
    }
    if (request.url.startsWith('/v1.0/') && !(body?.statusCode === res.statusCode && typeof body.code === 'string')) {
      // remove.bg's API answers in remove.bg's error shape (refusals before routing, such as 414, in the API's).
      const first = (body as { errors?: { title?: unknown; code?: unknown }[] } | undefined)?.errors?.[0];
      if (typeof first?.title === 'string' && typeof first.code === 'string') return { statusCode: res.statusCode, ms, problem: null };
      return { statusCode: res.statusCode, ms, problem: `${res.statusCode} with a body not in remove.bg's error shape: ${res.body.slice(0, 200)}` };
    }
    if (body?.statusCode !== res.statusCode || typeof body.code !== 'string' || typeof body.message !== 'string') {
      return { statusCode: res.statusCode, ms, problem: `${res.statusCode} with a body not in the error shape: ${res.body.slice(0, 200)}` };
    }
  }
  return { statusCode: res.statusCode, ms, problem: null };
}

async function readWhole(res: LightMyRequestResponse): Promise<{ statusCode: number; headers: Record<string, unknown>; body: string; json(): unknown }> {
  const chunks: Buffer[] = [];
  for await (const chunk of res.stream()) chunks.push(Buffer.from(chunk as Buffer));
  const body = Buffer.concat(chunks).toString('utf8');
  return { statusCode: res.statusCode, headers: res.headers, body, json: () => JSON.parse(body) };
}

// Bull Board's pages answer a browser (Accept: text/html) without a session
// with the sign-in form, a page rather than a JSON error, by design.
function isBoardLogin(request: FuzzRequest, res: { headers: Record<string, unknown>; body: string }): boolean {
  return (
    request.method === 'GET' &&
    request.url.startsWith('/admin/queues') &&
    String(res.headers['content-type']).startsWith('text/html') &&
    res.body.includes('action="/admin/queues/session"')
  );
}

/**
 * GET /api/worker/health answers 503 `{ status: 'unhealthy' }` when no worker
 * is alive, as load balancers expect: a verdict on the system, not a failure
 * to handle the request (the fuzzed API runs without workers).
 */
function isHealthVerdict(request: FuzzRequest, body: string): boolean {
  if (request.method !== 'GET' || !request.url.startsWith('/api/worker/health')) return false;
  try {
    return (JSON.parse(body) as { status?: unknown }).status === 'unhealthy';
  } catch {
    return false;
  }
}

/** A short description of a failing request for the test output (long strings cut). */
export function describeRequest(request: FuzzRequest): string {
  const cut = (s: string) => (s.length > 300 ? `${s.slice(0, 300)}… (${s.length} chars)` : s);
  const headers = Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k, cut(v)]));
  return `${request.method} ${cut(request.url)} ${JSON.stringify(headers)} ${request.payload === undefined ? '' : cut(String(request.payload))}`;
}

export interface FuzzReport {
  requests: number;
  /** responses by status code */
  statuses: Record<number, number>;
  /** per route, the smallest failing request found and what was wrong */
  failures: { route: string; request: string; problem: string }[];
  slowestMs: number;
}

/**
 * Runs `runs` requests against each route and reports the statuses seen and
 * every route that answered a 5xx, a malformed error or nothing in time.
 */
export async function fuzzRoutes(
  app: FastifyInstance,
  routes: readonly FuzzRoute[],
  creds: Credentials,
  options: { runs: number; seed?: number; deadlineMs?: number },
): Promise<FuzzReport> {
  const report: FuzzReport = { requests: 0, statuses: {}, failures: [], slowestMs: 0 };
  const deadlineMs = options.deadlineMs ?? 10_000;
  for (const route of routes) {
    let problem = '';
    const result = await fc.check(
      fc.asyncProperty(requestsFor(route, creds), async (request) => {
        const outcome = await sendAndJudge(app, request, deadlineMs);
        report.requests++;
        report.statuses[outcome.statusCode] = (report.statuses[outcome.statusCode] ?? 0) + 1;
        report.slowestMs = Math.max(report.slowestMs, outcome.ms);
        if (outcome.problem) problem = outcome.problem;
        return outcome.problem === null;
      }),
      { numRuns: options.runs, ...(options.seed !== undefined ? { seed: options.seed } : {}), endOnFailure: false, maxSkipsPerRun: 0 },
    );
    if (result.failed) {
      const [request] = result.counterexample ?? [];
      report.failures.push({
        route: `${route.method} ${route.url}`,
        request: request ? describeRequest(request) : '?',
        problem: problem || String(result.errorInstance),
      });
    }
  }
  return report;
}
