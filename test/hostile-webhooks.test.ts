import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { postWebhook, RESPONSE_READ_BYTES } from '../worker/webhooks/deliver.js';

/**
 * A hostile webhook receiver answers 200 with an endless body. The worker
 * reads at most RESPONSE_READ_BYTES of it, counts the delivery, and drops the
 * connection instead of buffering what the receiver sends.
 */
t.test('an endless receiver answer is read only up to a few KiB', async (t) => {
  let sent = 0;
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain' });
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const pump = () => {
      while (!res.destroyed && sent < 2 * 1024 * 1024 * 1024) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
    };
    res.on('close', () => undefined);
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  const host = `127.0.0.1:${port}`;
  const started = performance.now();
  const result = await postWebhook(`http://${host}/hook`, '{}', {}, { allowPrivate: false, allowedPrivateHosts: [host], timeoutMs: 5000 });
  const ms = performance.now() - started;
  t.equal(result.statusCode, 200, 'the delivery counts');
  t.ok(ms < 2000, `returned in ${ms.toFixed(0)} ms`);
  t.ok(RESPONSE_READ_BYTES <= 4096);
  // What the server managed to write before the socket closed is kernel buffers plus our few KiB, not the 2 GiB it offered.
  t.ok(sent < 64 * 1024 * 1024, `the receiver got ${(sent / 1024 / 1024).toFixed(1)} MiB out before the worker hung up`);
});
