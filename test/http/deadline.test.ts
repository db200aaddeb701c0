/**
 * admission.deadlineMs with a writer that does not commit in time (issue 16 item 1): the answer is
 * `errored` within the deadline, other requests are not held, and the record on file says the same
 * as the answer. A real SQLite store whose write lock another connection holds (its writer thread
 * waits for the lock; the event loop does not).
 */
import t from 'tap';
import { aTaskRun } from '../builders.js';
import type { ChainedRecord, DecisionRecord } from '../../webhook/core/record.js';
import type { AppendOptions, DecisionStore } from '../../webhook/store/port.js';
import { verifyStore } from '../../webhook/store/evidence/bundle.js';
import { createTestApp, review, type TestApp } from './support.js';

const DEADLINE_MS = 300;

const post = (app: TestApp['app'], url: string, payload: unknown) =>
  app.inject({ method: 'POST', url, payload: JSON.stringify(payload), headers: { 'content-type': 'application/json' } });

async function timed<T>(p: Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await p;
  return { value, ms: performance.now() - t0 };
}

t.test('a writer stalled past the deadline: errored in time, /healthz and another /validate not held, record matches the answer', async (t) => {
  const { app, store, jwks, breakStore } = await createTestApp(t, { deadlineMs: DEADLINE_MS, busyTimeoutMs: 10_000 });
  // Warm up (first request compiles routes), and prove the store works.
  const warm = (await post(app, '/validate', review(aTaskRun({ serviceAccountName: 'ci-builder' }), { uid: 'warm' }))).json();
  t.equal(warm.response.allowed, true);

  const release = await breakStore();
  const stalled = timed(post(app, '/validate', review(aTaskRun({ serviceAccountName: 'ci-builder' }), { uid: 'stalled' })));
  // While that request waits for its commit, the process keeps answering.
  await new Promise((r) => setTimeout(r, 50));
  const health = await timed(app.inject({ method: 'GET', url: '/healthz' }));
  t.equal(health.value.statusCode, 200);
  t.ok(health.ms < DEADLINE_MS, `/healthz answered in ${health.ms.toFixed(1)} ms while the writer is stalled`);
  const other = timed(post(app, '/validate', review(aTaskRun({ serviceAccountName: 'ci-builder' }), { uid: 'other' })));

  const first = await stalled;
  const firstBody = first.value.json();
  t.equal(firstBody.response.allowed, false, 'the deadline answers errored');
  t.equal(firstBody.response.status.code, 500);
  t.match(firstBody.response.status.message, new RegExp(`within ${DEADLINE_MS} ms`));
  t.ok(first.ms >= DEADLINE_MS - 5 && first.ms < DEADLINE_MS + 250, `answered at the deadline (${first.ms.toFixed(0)} ms)`);
  const second = await other;
  t.equal(second.value.json().response.allowed, false);
  t.ok(second.ms < DEADLINE_MS + 250, `the other /validate was answered by its own deadline (${second.ms.toFixed(0)} ms), not held behind the first`);
  const id = firstBody.response.auditAnnotations['decision-id'] as string;
  const otherId = second.value.json().response.auditAnnotations['decision-id'] as string;

  await release();
  // The writer catches up: the cancelled records were never inserted; their errored records are.
  let rec: ChainedRecord | undefined;
  for (let i = 0; i < 200 && !(rec = await store.get(otherId)); i++) await new Promise((r) => setTimeout(r, 25));
  for (const [what, want] of [['first', id], ['other', otherId]] as const) {
    const r = await store.get(want);
    t.match(r, { verdict: 'errored', requestUid: what === 'first' ? 'stalled' : 'other', name: 'build-run', namespace: 'payments', kind: { kind: 'TaskRun' }, objectDigest: /^[0-9a-f]{64}$/, reasons: [{ code: 'STORE_DEADLINE', message: /cancelled before commit/ }] }, `${what}: the record on file is the errored answer, naming the object`);
    t.equal(r?.supersedes, undefined);
  }
  const all = (await store.query({ limit: 100 })).items;
  t.strictSame(all.map((r) => [r.requestUid, r.verdict]), [['warm', 'allowed'], ['stalled', 'errored'], ['other', 'errored']], 'no allowed record for the stalled requests');
  t.match(await verifyStore(store, jwks), { ok: true, records: 3 });
});

t.test('a commit too late to cancel: the errored answer is recorded as a record that supersedes it', async (t) => {
  // A port double for an adapter that cannot cancel (it ignores the signal) and commits after the
  // deadline: the answer is errored, and a linked errored record follows the late one.
  const records: DecisionRecord[] = [];
  let seq = 0;
  const late: Pick<DecisionStore, 'append'> = {
    append(r: DecisionRecord, _opts?: AppendOptions): Promise<ChainedRecord> {
      const delay = r.verdict === 'errored' ? 0 : DEADLINE_MS * 2;
      return new Promise((resolve) => setTimeout(() => {
        records.push(r);
        resolve({ ...r, seq: ++seq, prevHash: '', hash: '' });
      }, delay));
    },
  };
  const { app } = await createTestApp(t, { appendTo: late, deadlineMs: DEADLINE_MS });
  const res = await timed(post(app, '/validate', review(aTaskRun({ serviceAccountName: 'ci-builder' }), { uid: 'late' })));
  const body = res.value.json();
  t.equal(body.response.allowed, false);
  t.ok(res.ms < DEADLINE_MS + 250, `answered at the deadline (${res.ms.toFixed(0)} ms)`);
  await new Promise((r) => setTimeout(r, DEADLINE_MS * 3));
  t.equal(records.length, 2);
  const [errored, original] = [records.find((r) => r.verdict === 'errored'), records.find((r) => r.verdict !== 'errored')];
  t.match(original, { verdict: 'allowed', requestUid: 'late' }, 'the late commit landed');
  t.match(errored, { verdict: 'errored', requestUid: 'late', supersedes: original?.id, reasons: [{ code: 'STORE_DEADLINE', message: new RegExp(`decision ${original?.id} .*supersedes it`) }] });
  t.equal(body.response.auditAnnotations['decision-id'], errored?.id, 'the answer names the record that says errored');
});
