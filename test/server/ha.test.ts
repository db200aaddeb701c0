/**
 * High availability with the shared PostgreSQL store: two real `tzw serve` processes (distinct
 * replicas, one database, one signing key, the same TLS files) under concurrent load. Every
 * admission response names exactly one stored record (auditAnnotations decision-id ↔ rows), and
 * both writers' chains verify. The outage case is in ha-outage.test.ts.
 */
import t from 'tap';
import { Agent } from 'undici';
import { checkRecords, createHaFiles, createTestSchema, pgSkip, sendReviews, startReplica } from '../store/pg-support.js';

t.test('two replicas on one PostgreSQL', { skip: pgSkip }, async (t) => {
  t.test('every response has exactly one record, and every chain verifies', async (t) => {
    const s = await createHaFiles(t);
    const schema = await createTestSchema();
    t.teardown(() => schema.drop());
    const [a, b] = await Promise.all([startReplica(t, s, 'tzw-a', schema.url), startReplica(t, s, 'tzw-b', schema.url)]);
    const agent = new Agent({ connect: { ca: s.ca }, connections: 8 });
    t.teardown(() => agent.close());
    const sent = await sendReviews([a, b], agent, 400, 16);
    t.strictSame(sent.filter((x) => x.status !== 200 || !x.decisionId), [], 'every admission answered 200 with a decision id');
    t.equal(sent.filter((x) => x.allowed).length, 300, 'the unmapped TaskRun (one in four) is denied, the rest admitted');
    t.strictSame(await Promise.all([a.stop(), b.stop()]), [0, 0], 'both drain and exit 0');
    await checkRecords(t, schema, sent, s.jwks);
  });

});
