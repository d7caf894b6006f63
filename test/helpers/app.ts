import type { Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { buildApp, type BuildOptions } from '../../backend/app.js';
import { loadApiConfig } from '../../backend/config.js';
import { createVendor, type CreatedVendor } from '../../db/repos/vendors.js';
import type { VendorRole } from '../../db/schema.js';
import type { TestEnv } from './env.js';

/** The API built in-process (never listening) for `inject`. */
export async function testApp(t: Test, env: TestEnv, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = await buildApp(loadApiConfig({ env, processEnv: false }), { logger: false, ...options });
  t.teardown(() => app.close());
  await app.ready();
  return app;
}

export interface TestVendor extends CreatedVendor {
  token: string;
  auth: { authorization: string };
}

/** A vendor with an API key and a fresh token; `faceTagging` opts it in to face tagging (off by default, as for real vendors). */
export async function testVendor(
  app: FastifyInstance,
  options: { name?: string; plan?: string; role?: VendorRole; faceTagging?: boolean } = {},
): Promise<TestVendor> {
  const created = await createVendor(app.db, {
    name: options.name ?? 'Test Studio',
    plan: options.plan ?? 'unlimited',
    role: options.role ?? 'vendor',
    faceTagging: options.faceTagging ?? false,
  });
  const res = await app.inject({ method: 'POST', url: '/api/auth/token', payload: { apiKey: created.apiKey } });
  if (res.statusCode !== 200) throw new Error(`token request failed: ${res.statusCode} ${res.body}`);
  const token = (res.json() as { token: string }).token;
  return { ...created, token, auth: { authorization: `Bearer ${token}` } };
}

/** The API listening on a random local port (event streams and browsers need a real socket); its base URL. */
export async function listeningApp(t: Test, env: TestEnv): Promise<{ app: FastifyInstance; url: string }> {
  const app = await testApp(t, env);
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, url: address };
}
