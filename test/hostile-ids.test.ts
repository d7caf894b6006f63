import t from 'tap';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { multipartBody } from './helpers/multipart.js';
import { queueResize, waitForFinal } from './helpers/jobs.js';

/**
 * A vendor's projectId and recordId end up in storage paths, logs and
 * webhook bodies. Ids with `..`, a slash, a backslash or a control character
 * are refused at enqueue with a 400 naming the field, on every enqueue route
 * and body form, so no job is ever queued with one; another vendor's job runs
 * normally meanwhile.
 */
const BAD_IDS = ['ls\u2028', '..', '../../etc/passwd', 'a/b', '/abs', 'a\\b', 'a\u0000b', 'line\nbreak', 'tab\there', 'cr\r', 'del\u007f', 'c1\u0085'];

/** A test name TAP can carry: a raw U+2028 or C1 control would break its lines. */
const printable = (s: string) => JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

t.test('ids with "..", slashes or control characters are a 400 at enqueue; another vendor is unaffected', async (t) => {
  const env = await isolatedEnv(t, { WORKER_QUEUES: 'image-processing' });
  const app = await testApp(t, env);
  const images = await testServer(t);
  const jpeg = await makeJpeg(64, 48);
  images.route('/photo.jpg', serveBytes(jpeg, 'image/jpeg'));
  const photoUrl = `${images.url}/photo.jpg`;
  const attacker = await testVendor(app, { name: 'Path Walker' });
  const other = await testVendor(app, { name: 'Bystander' });
  const operations = [{ op: 'resize', width: 8 }];

  const post = (url: string, payload: object) => app.inject({ method: 'POST', url: `/api/image-queue/${url}`, headers: attacker.auth, payload });
  const refused = (res: { statusCode: number; json: () => unknown }, path: string, what: string) => {
    t.equal(res.statusCode, 400, `${what}: 400`);
    const body = res.json() as { code: string; fields?: { path: string; message: string }[] };
    t.equal(body.code, 'BAD_REQUEST', what);
    t.ok(
      body.fields?.some((f) => f.path === path && /must not contain/.test(f.message)),
      `${what}: names ${path} and the rule (${JSON.stringify(body.fields)})`,
    );
  };

  for (const bad of BAD_IDS) {
    const label = printable(bad);
    refused(await post('process-queue', { recordId: bad, projectId: 'p', photoUrl, operations }), 'body/recordId', `process-queue recordId ${label}`);
    refused(await post('process-queue', { recordId: 'r', projectId: bad, photoUrl, operations }), 'body/projectId', `process-queue projectId ${label}`);
    refused(await post('remove-bg-queue', { recordId: bad, projectId: 'p', photoUrl }), 'body/recordId', `remove-bg-queue recordId ${label}`);
    refused(await post('crop-face-queue', { recordId: 'r', projectId: bad, photoUrl, mode: 'passport' }), 'body/projectId', `crop-face-queue ${label}`);
    refused(
      await post('bulk-process', {
        projectId: 'p',
        items: [
          { recordId: 'ok', photoUrl },
          { recordId: bad, photoUrl },
        ],
        operations,
      }),
      'body/items/1/recordId',
      `bulk items ${label}`,
    );
    refused(
      await post('bulk-remove-bg', { projectId: 'p', recordIds: ['ok', bad], photoUrls: [photoUrl, photoUrl] }),
      'body/recordIds/1',
      `bulk recordIds ${label}`,
    );
    refused(await post('bulk-remove-bg', { projectId: bad, recordIds: ['ok'], photoUrls: [photoUrl] }), 'body/projectId', `bulk projectId ${label}`);
  }

  // The multipart form reads the same schema.
  const form = await multipartBody({ recordId: '../x', projectId: 'p', operations: JSON.stringify(operations) }, [
    { field: 'photo', filename: 'a.jpg', contentType: 'image/jpeg', bytes: jpeg },
  ]);
  refused(
    await app.inject({ method: 'POST', url: '/api/image-queue/process-queue', headers: { ...attacker.auth, ...form.headers }, payload: form.payload }),
    'body/recordId',
    'multipart recordId',
  );
  // And the persons filter, which takes a projectId too.
  const persons = await app.inject({ method: 'GET', url: `/api/persons/x/records?projectId=${encodeURIComponent('a/../b')}`, headers: attacker.auth });
  t.equal(persons.statusCode, 400, 'persons projectId filter');

  const rows = await app.db.selectFrom('jobs').select('id').where('vendor_id', '=', attacker.vendorId).execute();
  t.equal(rows.length, 0, 'no job was queued for any refused request');

  // Ids that only look odd are still fine: unicode, dots, spaces, colons.
  for (const good of ['Ünïcødé-名前', 'v1.2.3', 'a b', 'urn:x:1', '.hidden', 'trailing.']) {
    const res = await post('process-queue', { recordId: good, projectId: good, photoUrl, operations });
    t.equal(res.statusCode, 202, `${JSON.stringify(good)} is accepted`);
  }

  await testWorker(t, env);
  const jobId = await queueResize(app, other, photoUrl);
  const job = await waitForFinal(app.db, jobId);
  t.equal(job.status, 'completed', "the other vendor's job completes");
  const attackerJobs = await app.db.selectFrom('jobs').select('id').where('vendor_id', '=', attacker.vendorId).execute();
  for (const { id } of attackerJobs) t.equal((await waitForFinal(app.db, id)).status, 'completed', `accepted odd-looking id job ${id} completes`);
});
