/**
 * The bench counts only expected answers: its cheap answer check (bench/http-load.ts expectVerdict)
 * against real answers rendered by the admission app on a real SQLite store — patched, allowed,
 * denied, and errored while the store is unwritable.
 */
import t from 'tap';
import { expectVerdict } from '../../bench/http-load.js';
import { aPod, aTaskRun } from '../builders.js';
import { createTestApp, review } from '../http/support.js';

t.test('expectVerdict accepts exactly the expected verdict and returns its decision id', async (t) => {
  const { app, breakStore } = await createTestApp(t);
  const answer = async (url: string, object: Record<string, unknown>) => {
    const res = await app.inject({ method: 'POST', url, payload: JSON.stringify(review(object)), headers: { 'content-type': 'application/json' } });
    return { text: res.body, id: (res.json() as { response: { auditAnnotations: Record<string, string> } }).response.auditAnnotations['decision-id'] };
  };
  const patched = await answer('/mutate', aPod({ serviceAccountName: 'ci-builder' }));
  const allowed = await answer('/validate', aTaskRun({ serviceAccountName: 'ci-builder' }));
  const denied = await answer('/validate', aTaskRun({ serviceAccountName: 'nobody' }));
  const release = await breakStore();
  const errored = await answer('/mutate', aPod({ serviceAccountName: 'ci-builder' }));
  await release();
  t.match(errored.text, /"verdict":"errored"/, 'the store outage answers errored');

  const isPatched = expectVerdict('patched');
  const isAllowed = expectVerdict('allowed');
  t.equal(isPatched(patched.text), patched.id);
  t.equal(isAllowed(allowed.text), allowed.id);
  t.equal(isPatched(errored.text), undefined, 'an errored /mutate answer is not counted');
  t.equal(isAllowed(denied.text), undefined, 'a denial is not counted');
  t.equal(isPatched(allowed.text), undefined);
  t.equal(isAllowed(patched.text), undefined);
  t.equal(isPatched(''), undefined);
  t.equal(isPatched(patched.text.replace(/"verdict":"patched"/, '"verdict":"errored"')), undefined);
});
