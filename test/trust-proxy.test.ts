import t, { type Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../backend/app.js';
import { loadApiConfig } from '../backend/config.js';
import { parseTrustProxy } from '../backend/trust-proxy.js';
import { isolatedEnv, type TestEnv } from './helpers/env.js';

/**
 * TRUST_PROXY (issue 18): whose X-Forwarded-For is believed. From a peer
 * that is not a trusted proxy the header changes nothing, so it cannot be
 * forged to dodge the per-IP limits; behind a trusted hop the client's
 * address is used, so clients behind a load balancer are not one client.
 */
t.test('parsing: true/false, a hop count, or a list of IPs/CIDRs; anything else stops the API naming the variable', async (t) => {
  t.equal(parseTrustProxy('false'), false);
  t.equal(parseTrustProxy('TRUE'), true);
  t.equal(parseTrustProxy('0'), false, 'zero hops trusts nobody');
  t.equal(parseTrustProxy('2'), 2);
  t.same(parseTrustProxy(' 10.0.0.0/8, 192.168.1.7 ,fd00::/8,loopback'), ['10.0.0.0/8', '192.168.1.7', 'fd00::/8', 'loopback']);
  for (const bad of ['yes', '10.0.0.0/33', '10.0.0.300', 'fd00::/129', '10.0.0.0/8/1', 'proxy.example.com', ',', '65']) {
    t.throws(() => parseTrustProxy(bad), /^TRUST_PROXY: /, `"${bad}" is refused`);
  }
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent', TRUST_PROXY: '10.0.0.0/40' });
  await t.rejects(buildApp(loadApiConfig({ env, processEnv: false }), { logger: false }), /TRUST_PROXY: "10.0.0.0\/40"/, 'at startup');
});

/** The API with one extra route that answers request.ip. */
async function appWith(t: Test, env: TestEnv, trustProxy: string | undefined): Promise<FastifyInstance> {
  const app = await buildApp(loadApiConfig({ env: { ...env, ...(trustProxy !== undefined ? { TRUST_PROXY: trustProxy } : {}) }, processEnv: false }), {
    logger: false,
  });
  t.teardown(() => app.close());
  app.get('/test/ip', { config: { auth: 'public' } }, async (request) => ({ ip: request.ip }));
  await app.ready();
  return app;
}

const ipOf = async (app: FastifyInstance, remoteAddress: string, forwardedFor?: string) =>
  (await app.inject({ url: '/test/ip', remoteAddress, headers: forwardedFor !== undefined ? { 'x-forwarded-for': forwardedFor } : {} })).json().ip as string;

/** The per-IP global tier (token exchange with a bad key): the status codes of `n` attempts. */
async function attempts(app: FastifyInstance, n: number, from: (i: number) => { remoteAddress: string; forwardedFor?: string }): Promise<number[]> {
  const codes: number[] = [];
  for (let i = 0; i < n; i++) {
    const { remoteAddress, forwardedFor } = from(i);
    const res = await app.inject({
      method: 'POST',
      url: '/api/auth/token',
      remoteAddress,
      headers: forwardedFor !== undefined ? { 'x-forwarded-for': forwardedFor } : {},
      payload: { apiKey: 'iqk_not-a-key' },
    });
    codes.push(res.statusCode);
  }
  return codes;
}

t.test('request.ip and the per-IP limit under each setting', async (t) => {
  const env = await isolatedEnv(t, { LOG_LEVEL: 'silent', RATE_LIMIT_GLOBAL_MAX: '3', RATE_LIMIT_GLOBAL_WINDOW_MS: '60000' });

  await t.test('default (false): X-Forwarded-For changes nothing', async (t) => {
    const app = await appWith(t, env, undefined);
    t.equal(await ipOf(app, '203.0.113.5', '198.51.100.1'), '203.0.113.5');
    const codes = await attempts(app, 5, (i) => ({ remoteAddress: '203.0.113.5', forwardedFor: `198.51.100.${i + 1}` }));
    t.same(codes, [401, 401, 401, 429, 429], 'a new forged address per request does not reset the per-IP count');
  });

  await t.test('one trusted hop: the client before our proxy is the IP, whatever it prepends', async (t) => {
    const app = await appWith(t, { ...env, BULL_PREFIX: `${env.BULL_PREFIX}h` }, '1');
    t.equal(await ipOf(app, '10.0.0.2', '198.51.100.7'), '198.51.100.7', "our proxy's X-Forwarded-For names the client");
    t.equal(await ipOf(app, '10.0.0.2', '1.2.3.4, 198.51.100.7'), '198.51.100.7', 'an address the client wrote itself is not believed');
    const forged = await attempts(app, 5, (i) => ({ remoteAddress: '10.0.0.2', forwardedFor: `192.0.2.${i + 1}, 198.51.100.8` }));
    t.same(forged, [401, 401, 401, 429, 429], 'so forging the header does not dodge the limit');
    const others = await attempts(app, 3, (i) => ({ remoteAddress: '10.0.0.2', forwardedFor: `198.51.100.${20 + i}` }));
    t.same(others, [401, 401, 401], 'while other clients behind the same proxy count apart, not as one');
  });

  await t.test('a list of proxy addresses: only their headers are believed', async (t) => {
    const app = await appWith(t, { ...env, BULL_PREFIX: `${env.BULL_PREFIX}c` }, '10.0.0.0/8, 192.168.1.7');
    t.equal(await ipOf(app, '10.1.2.3', '198.51.100.9'), '198.51.100.9', 'a peer in the CIDR range is a trusted proxy');
    t.equal(await ipOf(app, '192.168.1.7', '10.9.9.9, 198.51.100.9'), '198.51.100.9', 'through two of our proxies, the first untrusted address is the client');
    t.equal(await ipOf(app, '203.0.113.9', '198.51.100.9'), '203.0.113.9', 'from any other peer the header is ignored');
    const untrusted = await attempts(app, 4, (i) => ({ remoteAddress: '203.0.113.9', forwardedFor: `198.51.100.${100 + i}` }));
    t.same(untrusted, [401, 401, 401, 429], 'and cannot dodge the per-IP limit');
  });
});
