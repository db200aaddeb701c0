/**
 * CanonicalText (evidence/canonical.ts): a member given as its canonical JSON text serialises to the
 * same bytes as the value itself, on the fast path and on the library path (odd input elsewhere).
 */
import t from 'tap';
import { CanonicalText, canonicalJson, isCanonicalOrder } from '../../webhook/store/evidence/canonical.js';

const patch = [{ op: 'add', path: '/metadata/annotations', value: { 'a~1b': 'x', b: 'y' } }, { op: 'add', path: '/spec/volumes/-', value: { name: 'v', projected: { sources: [{ serviceAccountToken: { audience: 'sts', expirationSeconds: 600, path: 'token' } }] } } }];

t.test('a record with its patch as CanonicalText hashes the same bytes as with the patch object', async (t) => {
  t.ok(isCanonicalOrder(patch));
  t.notOk(isCanonicalOrder({ b: 1, a: 2 }));
  t.notOk(isCanonicalOrder([{ value: { path: 1, op: 2 } }]), 'nested order counts');
  const record = { verdict: 'patched', id: 'x', patch, seq: 3, namespace: 'n', tekton: { taskRun: 'r' }, note: undefined };
  const expected = canonicalJson(record);
  t.equal(canonicalJson({ ...record, patch: new CanonicalText(JSON.stringify(patch)) }), expected, 'fast path');
  // A Date member sends the whole record down the library path, which sees CanonicalText's toJSON.
  const odd = { ...record, when: new Date(0) };
  t.equal(canonicalJson({ ...odd, patch: new CanonicalText(JSON.stringify(patch)) }), canonicalJson(odd), 'library path');
});
