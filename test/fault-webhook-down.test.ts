import t from 'tap';
import { webhookReceiverDown } from './helpers/faults.js';

/**
 * A vendor's webhook receiver down (nothing listening) while its jobs
 * complete: deliveries are retried on the backoff schedule until it answers,
 * and every job's event arrives. test/webhooks.test.ts covers a receiver
 * answering 500, the signature and the delivery log.
 */
t.test('webhook receiver down for a while: deliveries retried until it answers, none lost', async (t) => {
  const outcome = await webhookReceiverDown(t, { jobs: 10, downMs: 4000 });
  t.comment(`${outcome.scenario}: ${outcome.notes}`);
  t.ok((outcome.extra['triesWhileDown'] as number) > 0, 'deliveries were tried (and logged) while it was down');
  t.equal(outcome.completed, 10);
  t.equal(outcome.extra['undelivered'], 0, 'every event arrived once the receiver was up');
  t.equal(outcome.lost, 0);
  t.equal(outcome.duplicated, 0);
});
