import t from 'tap';
import { createPool } from 'mysql2/promise';
import { Redis } from 'ioredis';
import { privateMariadb, privateRedis } from './helpers/private-services.js';

t.test('private servers start, stop and start again on their own ports', async (t) => {
  const [mysql, redis] = await Promise.all([privateMariadb(t, { maxAllowedPacket: 65536 }), privateRedis(t)]);
  const pool = createPool({ uri: mysql.url });
  const [rows] = await pool.query('SELECT @@max_allowed_packet AS p');
  t.equal((rows as { p: number }[])[0]?.p, 65536);
  await pool.end();

  const client = new Redis(redis.url, { maxRetriesPerRequest: null });
  t.equal(await client.ping(), 'PONG');
  await redis.stop();
  await redis.start();
  t.equal(await client.ping(), 'PONG', 'reconnects after a restart');
  client.disconnect();
});
