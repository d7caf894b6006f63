import type { Test } from 'tap';
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { serveBytes, testServer, type TestServer } from './http.js';

/**
 * A real HTTP server standing in for Cloudinary's API (the SDK's
 * `upload_prefix`): it checks the request signature the way Cloudinary
 * documents it (SHA-1 of the sorted parameters and the API secret), keeps
 * the bytes and serves them back; `state` makes it fail or hang.
 */
export const CLOUD = 'demo-cloud';
export const KEY = '123456789012345';
export const SECRET = 'a-very-secret-api-secret';

export interface Upload {
  params: Record<string, string>;
  bytes: Buffer;
}

function signatureOf(params: Record<string, string>, secret: string): string {
  const toSign = Object.entries(params)
    .filter(([k, v]) => !['file', 'api_key', 'signature', 'resource_type', 'cloud_name'].includes(k) && v !== '')
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v.replace(/&/g, '%26')}`)
    .join('&');
  return createHash('sha1')
    .update(toSign + secret)
    .digest('hex');
}

/**
 * The stand-in: upload, delivery, ping and delete endpoints (the upload API's
 * signed `destroy`, the admin API's `delete_resources` by ids or prefix with
 * Basic auth), plus knobs to make it fail (`failNext` < 0: fail every upload).
 * A deleted image is no longer delivered.
 */
export async function fakeCloudinary(t: Test) {
  const server: TestServer = await testServer(t);
  const uploads: Upload[] = [];
  const stored = new Map<string, Buffer>();
  /** public id → delivery path, for what is stored now */
  const paths = new Map<string, string>();
  /** every delete call: the API used and the public ids or prefix it named */
  const deletes: { api: 'destroy' | 'delete_resources' | 'delete_resources_by_prefix'; target: string[] }[] = [];
  const state = { failNext: 0, failStatus: 500, hang: false, hanging: 0, closedWhileHanging: 0 };
  server.route(`/v1_1/${CLOUD}/image/upload`, async (req, res, body) => {
    if (state.hang) {
      state.hanging++;
      req.socket.on('close', () => state.closedWhileHanging++);
      return;
    }
    if (state.failNext !== 0) {
      if (state.failNext > 0) state.failNext--;
      res.writeHead(state.failStatus, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'try later' } }));
      return;
    }
    const form = await new Response(new Uint8Array(body), { headers: { 'content-type': String(req.headers['content-type']) } }).formData();
    const params: Record<string, string> = {};
    let bytes = Buffer.alloc(0);
    for (const [k, v] of form as unknown as Iterable<[string, string | Blob]>) {
      if (typeof v === 'string') params[k] = v;
      else bytes = Buffer.from(await v.arrayBuffer());
    }
    if (params['api_key'] !== KEY || params['signature'] !== signatureOf(params, SECRET)) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'Invalid Signature' } }));
      return;
    }
    uploads.push({ params, bytes });
    const meta = await sharp(bytes).metadata();
    const path = `/res/${CLOUD}/image/upload/v1/${params['public_id']}.${meta.format === 'jpeg' ? 'jpg' : meta.format}`;
    stored.set(path, bytes);
    paths.set(String(params['public_id']), path);
    const serve = serveBytes(bytes, `image/${meta.format}`);
    server.route(path, (req, res, body) => (stored.has(path) ? serve(req, res, body) : void res.writeHead(404).end('not found')));
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ public_id: params['public_id'], version: 1, format: meta.format, bytes: bytes.length, secure_url: `${server.url}${path}` }));
  });
  server.route(`/v1_1/${CLOUD}/ping`, (req, res) => {
    const ok = req.headers.authorization === `Basic ${Buffer.from(`${KEY}:${SECRET}`).toString('base64')}`;
    res
      .writeHead(ok ? 200 : 401, { 'content-type': 'application/json' })
      .end(JSON.stringify(ok ? { status: 'ok' } : { error: { message: 'Invalid credentials' } }));
  });
  const remove = (publicId: string): boolean => {
    const path = paths.get(publicId);
    if (!path) return false;
    paths.delete(publicId);
    return stored.delete(path);
  };
  server.route(`/v1_1/${CLOUD}/image/destroy`, async (req, res, body) => {
    const form = await new Response(new Uint8Array(body), { headers: { 'content-type': String(req.headers['content-type']) } }).formData();
    const params: Record<string, string> = {};
    for (const [k, v] of form as unknown as Iterable<[string, string]>) params[k] = v;
    if (params['api_key'] !== KEY || params['signature'] !== signatureOf(params, SECRET)) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'Invalid Signature' } }));
      return;
    }
    const publicId = String(params['public_id']);
    deletes.push({ api: 'destroy', target: [publicId] });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ result: remove(publicId) ? 'ok' : 'not found' }));
  });
  server.route(`/v1_1/${CLOUD}/resources/image/upload`, (req, res, body) => {
    if (req.method !== 'DELETE' || req.headers.authorization !== `Basic ${Buffer.from(`${KEY}:${SECRET}`).toString('base64')}`) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'Invalid credentials' } }));
      return;
    }
    const params = new URLSearchParams(body.toString('utf8'));
    const prefix = params.get('prefix');
    const ids = prefix !== null ? [...paths.keys()].filter((id) => id.startsWith(prefix)) : params.getAll('public_ids[]');
    deletes.push(prefix !== null ? { api: 'delete_resources_by_prefix', target: [prefix] } : { api: 'delete_resources', target: ids });
    const deleted = Object.fromEntries(ids.map((id) => [id, remove(id) ? 'deleted' : 'not_found']));
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ deleted, partial: false }));
  });
  const url = `cloudinary://${KEY}:${SECRET}@${CLOUD}?upload_prefix=${server.url}`;
  return { server, uploads, stored, paths, deletes, state, url };
}
