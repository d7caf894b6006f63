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

/** The stand-in: upload, delivery and ping endpoints, plus knobs to make it fail (`failNext` < 0: fail every upload). */
export async function fakeCloudinary(t: Test) {
  const server: TestServer = await testServer(t);
  const uploads: Upload[] = [];
  const stored = new Map<string, Buffer>();
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
    server.route(path, serveBytes(bytes, `image/${meta.format}`));
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
  const url = `cloudinary://${KEY}:${SECRET}@${CLOUD}?upload_prefix=${server.url}`;
  return { server, uploads, stored, state, url };
}
