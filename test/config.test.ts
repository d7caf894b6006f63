import t from 'tap';
import { readFile } from 'node:fs/promises';
import { loadApiConfig } from '../backend/config.js';
import { loadWorkerConfig } from '../worker/config.js';
import { type ConfigError } from '../platform/config.js';
import { publicBaseUrl } from '../platform/config-sections.js';
import { createStorage } from '../platform/storage/index.js';
import { allVariables, renderEnvExample, renderMarkdownTable, TABLE_END, TABLE_START, tableRows } from '../scripts/config-registry.js';
import { TEST_JWT_SECRET } from './helpers/env.js';

t.test('a missing or bad variable stops the process with a message naming it', async (t) => {
  t.throws(() => loadApiConfig({ env: {}, processEnv: false }), { name: 'ConfigError', message: /JWT_SECRET is required/ });
  t.throws(() => loadApiConfig({ env: { JWT_SECRET: 'short' }, processEnv: false }), { message: /JWT_SECRET/ });
  t.throws(() => loadApiConfig({ env: { JWT_SECRET: TEST_JWT_SECRET, PORT: 'eighty' }, processEnv: false }), { message: /PORT/ });
  t.throws(() => loadWorkerConfig({ env: { CONCURRENCY_FACE_CROP: '0' }, processEnv: false }), { message: /CONCURRENCY_FACE_CROP/ });
  t.throws(() => loadWorkerConfig({ env: { STORAGE_DRIVER: 'ftp' }, processEnv: false }), { message: /STORAGE_DRIVER/ });
  const error = t.throws(() => loadApiConfig({ env: {}, processEnv: false })) as ConfigError;
  t.match(error.message, /see \.env\.example/);
});

t.test('defaults run on one machine with no credentials', async (t) => {
  const config = loadApiConfig({ env: { JWT_SECRET: TEST_JWT_SECRET }, processEnv: false });
  t.equal(config.PORT, 3000);
  t.equal(config.MYSQL_URL, 'mysql://root@127.0.0.1:3306/imagequeue');
  t.equal(config.ALLOW_PRIVATE_SOURCE_URLS, false);
  const worker = loadWorkerConfig({ env: {}, processEnv: false });
  t.equal(worker.CONCURRENCY_BACKGROUND_REMOVAL, 3);
  t.equal(worker.CONCURRENCY_FACE_CROP, 3);
  t.equal(worker.CONCURRENCY_IMAGE_PROCESSING, 5);
  t.equal(worker.JOB_TIMEOUT_MS, 60_000);
});

t.test('result URLs follow PORT when PUBLIC_BASE_URL is not set', async (t) => {
  const dir = t.testdir();
  const worker = loadWorkerConfig({ env: { PORT: '3917', STORAGE_LOCAL_DIR: dir }, processEnv: false });
  const stored = await (await createStorage(worker)).put('v/p/a.txt', Buffer.from('x'), 'text/plain');
  t.equal(stored.url, 'http://localhost:3917/files/v/p/a.txt', "the worker's result URL points at the API's port");
  const api = loadApiConfig({ env: { JWT_SECRET: TEST_JWT_SECRET, PORT: '3917' }, processEnv: false });
  t.equal(publicBaseUrl(api), 'http://localhost:3917');
  const set = loadWorkerConfig({ env: { PORT: '3917', PUBLIC_BASE_URL: 'https://img.example.com', STORAGE_LOCAL_DIR: dir }, processEnv: false });
  t.equal((await (await createStorage(set)).put('v/p/b.txt', Buffer.from('x'), 'text/plain')).url, 'https://img.example.com/files/v/p/b.txt');
  t.throws(() => loadWorkerConfig({ env: { PUBLIC_BASE_URL: 'localhost:3000' }, processEnv: false }), { message: /PUBLIC_BASE_URL/ });
});

t.test('.env.example and docs/configuration.md list every variable with its default', async (t) => {
  const example = await readFile(new URL('../.env.example', import.meta.url), 'utf8');
  t.equal(example, renderEnvExample(), '.env.example is current (npm run config:docs)');
  for (const v of allVariables()) t.ok(v.description.length > 10, `${v.name} has a description`);
  const expected = tableRows(`${TABLE_START}\n${renderMarkdownTable()}\n${TABLE_END}`);
  t.equal(expected.length, allVariables().length + 1, 'one row per variable, and the header');
  const doc = await readFile(new URL('../docs/configuration.md', import.meta.url), 'utf8');
  t.same(tableRows(doc), expected, 'the table in docs/configuration.md is current (npm run config:docs)');
});
