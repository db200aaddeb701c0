/**
 * High availability through a PostgreSQL outage: two real `tzw serve` processes whose store URL
 * points at a TCP proxy the test cuts mid-load (stopping the shared cluster would disturb other
 * tests). No admission fails, readiness stays up, and afterwards every decision is in PostgreSQL
 * exactly once, in chains that verify.
 */
import t from 'tap';
import { Agent, request } from 'undici';
import { checkRecords, createHaFiles, createTcpProxy, createTestSchema, pgSkip, PG_URL, sendReviews, startReplica, withSchema } from '../store/pg-support.js';

t.test('two replicas on one PostgreSQL', { skip: pgSkip }, async (t) => {
  t.test('PostgreSQL goes away mid-load: no admission fails, nothing is lost or doubled', async (t) => {
    const s = await createHaFiles(t);
    const schema = await createTestSchema();
    t.teardown(() => schema.drop());
    const proxy = await createTcpProxy();
    t.teardown(() => proxy.close());
    const url = withSchema(PG_URL!, schema.name, proxy.port);
    const [a, b] = await Promise.all([startReplica(t, s, 'tzw-a', url), startReplica(t, s, 'tzw-b', url)]);
    const agent = new Agent({ connect: { ca: s.ca }, connections: 8 });
    t.teardown(() => agent.close());
    const readiness: number[] = [];
    let inPgDuringOutage = -1;
    const sent = await sendReviews([a, b], agent, 600, 8, async (done) => {
      if (done === 150) proxy.down();
      if (done === 300) {
        // Read directly, not through the proxy: the servers cannot reach PostgreSQL now.
        inPgDuringOutage = Number((await schema.pool.query('SELECT count(*) AS n FROM decisions')).rows[0].n);
        for (const r of [a, b]) {
          const res = await request(`${r.admission}/readyz`, { dispatcher: agent });
          await res.body.text(); // an unread body keeps its connection busy
          readiness.push(res.statusCode);
        }
      }
      if (done === 450) proxy.up();
    });
    t.ok(inPgDuringOutage >= 0 && inPgDuringOutage < 300, `mid-outage PostgreSQL held ${inPgDuringOutage} of 300 admitted decisions: the rest waited in the spools`);
    t.strictSame(readiness, [200, 200], 'both replicas stay ready while PostgreSQL is down (the spool takes the decisions)');
    t.strictSame(sent.filter((x) => x.status !== 200 || !x.decisionId), [], 'no admission failed during the outage');
    t.equal(sent.filter((x) => x.allowed).length, 450);
    t.strictSame(await Promise.all([a.stop(), b.stop()]), [0, 0], 'both drain the spool to PostgreSQL and exit 0');
    await checkRecords(t, schema, sent, s.jwks);
  });
});
