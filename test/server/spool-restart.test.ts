/**
 * A spool outlives its process (what overlays/ha's StatefulSet gives a pod): two real `tzw serve`
 * replicas behind the cuttable TCP proxy; PostgreSQL is cut, decisions answered by replica A wait
 * in its spool, A is killed with SIGKILL (no drain, no goodbye) and started again on the same spool
 * directory with the same TZW_REPLICA, as a StatefulSet pod comes back on its claim with its name.
 * It serves from the spool while PostgreSQL is still cut; when PostgreSQL is back it forwards
 * everything, and its "PostgreSQL takes writes again" line carries the backlog. Afterwards every
 * answered decision is in PostgreSQL exactly once, and both chains verify.
 */
import t from 'tap';
import { Agent, request } from 'undici';
import { checkRecords, createHaFiles, createTcpProxy, createTestSchema, pgSkip, PG_URL, sendReviews, startReplica, withSchema, type Sent } from '../store/pg-support.js';

t.test('replica killed (-9) during a PostgreSQL outage and started again on its spool', { skip: pgSkip }, async (t) => {
  const s = await createHaFiles(t);
  const schema = await createTestSchema();
  t.teardown(() => schema.drop());
  const proxy = await createTcpProxy();
  t.teardown(() => proxy.close());
  const url = withSchema(PG_URL!, schema.name, proxy.port);
  // Pod names, as TZW_REPLICA is set from metadata.name in the StatefulSet.
  let a = await startReplica(t, s, 'tekton-zscaler-webhook-0', url, { logLevel: 'info' });
  const b = await startReplica(t, s, 'tekton-zscaler-webhook-1', url);
  const agent = new Agent({ connect: { ca: s.ca }, connections: 8 });
  t.teardown(() => agent.close());
  const sent: Sent[] = [];
  const ok = (batch: Sent[]) => batch.filter((x) => x.status !== 200 || !x.decisionId);

  const before = await sendReviews([a, b], agent, 80, 4);
  t.strictSame(ok(before), [], 'PostgreSQL up: all answered');
  sent.push(...before);

  proxy.down();
  const during = await sendReviews([a, b], agent, 200, 4);
  t.strictSame(ok(during), [], 'PostgreSQL cut: all answered from the spools');
  sent.push(...during);
  const inPg = Number((await schema.pool.query('SELECT count(*) AS n FROM decisions')).rows[0].n);
  const waiting = sent.length - inPg;
  t.ok(waiting >= 100, `${waiting} answered decisions are not in PostgreSQL yet`);

  t.equal(await a.kill(), 'SIGKILL', 'replica A killed with -9 while its backlog waits in its spool');
  a = await startReplica(t, s, 'tekton-zscaler-webhook-0', url, { logLevel: 'info' });
  const ready = await request(`${a.admission}/readyz`, { dispatcher: agent });
  t.equal(ready.statusCode, 200, 'A is ready again while PostgreSQL is still cut (its spool takes decisions)');
  t.match(await ready.body.json(), { detail: { store: { backlog: Number } } });
  t.ok(a.logs().some((l) => /PostgreSQL is not reachable at start: serving from the local spool/.test(l.msg)), 'A says it serves from its spool');

  const after = await sendReviews([a, b], agent, 100, 4);
  t.strictSame(ok(after), [], 'and answers, continuing its chain from the spool');
  sent.push(...after);

  proxy.up();
  const backlogOf = async (r: typeof a) => {
    const res = await request(`${r.admission}/readyz`, { dispatcher: agent });
    return ((await res.body.json()) as { detail: { store: { backlog: number } } }).detail.store.backlog;
  };
  let backlogs = [-1, -1];
  for (const end = Date.now() + 30_000; Date.now() < end && backlogs.some((n) => n !== 0); await new Promise((r) => setTimeout(r, 100))) {
    backlogs = await Promise.all([backlogOf(a), backlogOf(b)]);
  }
  t.strictSame(backlogs, [0, 0], 'PostgreSQL back: both spools forward their backlog (A\'s from before the kill too)');
  t.strictSame(await Promise.all([a.stop(), b.stop()]), [0, 0], 'both exit 0');
  const restored = a.logs().filter((l) => /^PostgreSQL takes writes again/.test(l.msg));
  t.equal(restored.length, 1, 'A logs the recovery once');
  const aAnswered = sent.filter((x) => x.replica === a.name).length;
  t.ok((restored[0]?.backlog as number) > 0 && (restored[0]?.backlog as number) <= aAnswered, `with the backlog it came back to (${String(restored[0]?.backlog)} of A's ${aAnswered} answers)`);
  t.equal(sent.length, 380);
  // One record per response (of its request, by its replica — A's before and after the kill under
  // the same writer id), nothing else; both chains verify and the final checkpoints sign them whole.
  await checkRecords(t, schema, sent, s.jwks);
});
