import t from 'tap';
import { isolatedEnv } from './helpers/env.js';
import { testApp, testVendor } from './helpers/app.js';
import { testWorker } from './helpers/worker.js';
import { freePort } from './helpers/private-services.js';
import { attemptRows, queueResize, waitForFinal } from './helpers/jobs.js';
import { waitFor } from './helpers/wait.js';
import { serveBytes, testServer } from './helpers/http.js';
import { makeJpeg } from './helpers/fixtures.js';
import { AppError, publicMessage } from '../jobs/errors.js';

/**
 * Issue 18, what leaks: a vendor whose job fails against our insides (a
 * rembg instance down, a private image host refusing) or whose webhook
 * receiver is down reads why in words, never our internal URLs, addresses,
 * ports or a driver's message: not in the job's status, its attempt
 * history, nor the webhook delivery log.
 */
t.test('job errors and webhook delivery logs name no internal URL, address or driver message', async (t) => {
  const closedRembg = await freePort();
  const closedImages = await freePort();
  const closedReceiver = await freePort();
  const images = await testServer(t);
  images.route('/p.jpg', serveBytes(await makeJpeg(32, 32), 'image/jpeg'));
  const env = await isolatedEnv(t, {
    WORKER_QUEUES: 'background-removal,image-processing',
    REMBG_URLS: `http://127.0.0.1:${closedRembg}`,
    REMBG_WAIT_MS: '300',
    REMBG_HEALTH_INTERVAL_MS: '200',
    JOB_ATTEMPTS: '1',
    ALLOW_HTTP_WEBHOOKS: 'true',
    WEBHOOK_ALLOWED_PRIVATE_HOSTS: `127.0.0.1:${closedReceiver}`,
    WEBHOOK_ATTEMPTS: '1',
    WEBHOOK_OUTBOX_INTERVAL_MS: '100',
    LOG_LEVEL: 'silent',
  });
  const app = await testApp(t, env);
  // The worker fetches only the two allowlisted private hosts: one refuses connections, one serves the photo.
  await testWorker(t, { ...env, ALLOW_PRIVATE_SOURCE_URLS: 'false', SOURCE_ALLOWED_PRIVATE_HOSTS: `127.0.0.1:${closedImages},${new URL(images.url).host}` });
  const vendor = await testVendor(app);
  const hook = await app.inject({
    method: 'PUT',
    url: '/api/webhooks',
    headers: vendor.auth,
    payload: { webhookUrl: `http://127.0.0.1:${closedReceiver}/hook` },
  });
  t.equal(hook.statusCode, 200, hook.body);

  const refused = await waitForFinal(app.db, await queueResize(app, vendor, `http://127.0.0.1:${closedImages}/a.jpg`));
  t.equal(refused.error_code, 'SOURCE_FETCH_FAILED');
  t.equal(refused.error_message, 'source URL could not be fetched: the connection was refused');

  const cutout = await app.inject({
    method: 'POST',
    url: '/api/image-queue/remove-bg-queue',
    headers: vendor.auth,
    payload: { recordId: 'cut', projectId: 'p', photoUrl: `${images.url}/p.jpg` },
  });
  t.equal(cutout.statusCode, 202, cutout.body);
  const rembgJob = await waitForFinal(app.db, cutout.json().jobId as string);
  t.equal(rembgJob.error_code, 'REMBG_UNAVAILABLE');
  t.equal(rembgJob.error_message, 'no background-removal instance could take the job just now; it is tried again');

  const internal = new RegExp(`127\\.0\\.0\\.1|${closedRembg}|${closedImages}|ECONNREFUSED|connect |http://|\\bat \\w`);
  for (const jobId of [refused.id, rembgJob.id]) {
    const status = await app.inject({ method: 'GET', url: `/api/image-queue/job/${jobId}`, headers: vendor.auth });
    t.equal(status.statusCode, 200);
    // (its data carries the vendor's own photoUrl; the error is ours to word)
    const error = JSON.stringify(status.json().error);
    t.match(error, /"code":"[A-Z_]+","message":"[^"]+"/);
    t.notMatch(error, internal, `job ${jobId} error: ${error}`);
    for (const row of await attemptRows(app.db, jobId)) t.notMatch(row.error_message ?? '', internal, `attempt of ${jobId}: ${row.error_message}`);
  }

  const deliveries = await waitFor(async () => {
    const res = await app.inject({ method: 'GET', url: '/api/webhooks/deliveries', headers: vendor.auth });
    const list = (res.json() as { deliveries: { outcome: string; error: string | null }[] }).deliveries;
    return list.length >= 2 ? list : undefined;
  }, 30_000);
  for (const d of deliveries) {
    t.equal(d.outcome, 'failed');
    t.equal(d.error, 'webhook URL could not be fetched: the connection was refused', 'the failure in words, not the driver message');
  }
});

t.test('publicMessage: our side in a fixed sentence, the rest masked', async (t) => {
  t.equal(
    publicMessage(new AppError('INTERNAL', "ER_NO_SUCH_TABLE: Table 'iq.jobs' doesn't exist\n    at Query.run (/app/db.js:1:1)")),
    'the worker hit an unexpected error; the operators have the details under this job id',
  );
  t.equal(
    publicMessage(new AppError('DATABASE_UNAVAILABLE', 'MySQL unavailable: connect ECONNREFUSED 10.0.3.4:3306')),
    'the job database was unavailable; the job is tried again',
  );
  t.equal(
    publicMessage(new AppError('REMBG_FAILED', 'background removal refused the call (HTTP 400): see http://rembg-2.internal:5000/docs at 10.0.0.7:5000')),
    'background removal refused the call (HTTP 400): see (an internal address) at (an internal address)',
  );
  t.equal(
    publicMessage(new AppError('SOURCE_URL_FORBIDDEN', 'source URL points to a loopback address (127.0.0.1)')),
    'source URL points to a loopback address (127.0.0.1)',
  );
});
