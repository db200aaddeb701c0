import t from 'tap';
import { parseAdmissionReview, renderReview } from '../../webhook/core/wire.js';
import { allowed, denied, patched } from '../../webhook/core/verdict.js';
import { reason } from '../../webhook/core/reasons.js';

const review = (request: unknown) => ({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request });
const req = { uid: 'u-1', kind: { group: 'tekton.dev', version: 'v1', kind: 'TaskRun' }, operation: 'CREATE', namespace: 'ns', object: { metadata: { name: 'x' } } };

t.test('parseAdmissionReview rejects bad envelopes with a message naming the field', async (t) => {
  const cases: Array<[string, unknown, RegExp, string?]> = [
    ['not an object', 'x', /JSON object/],
    ['array', [], /JSON object/],
    ['wrong apiVersion', { ...review(req), apiVersion: 'admission.k8s.io/v1beta1' }, /apiVersion must be/],
    ['wrong kind', { ...review(req), kind: 'Pod' }, /kind must be/],
    ['no request', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }, /request is missing/],
    ['no uid', review({ ...req, uid: undefined }), /request.uid/],
    ['numeric uid', review({ ...req, uid: 7 }), /request.uid/],
    ['bad kind', review({ ...req, kind: 'TaskRun' }), /request.kind/, 'u-1'],
    ['bad operation', review({ ...req, operation: 'PATCH' }), /request.operation/, 'u-1'],
    ['no object on CREATE', review({ ...req, object: undefined }), /request.object is missing/, 'u-1'],
    ['object is array', review({ ...req, object: [] }), /request.object must be/, 'u-1'],
    ['bad groups', review({ ...req, userInfo: { groups: 'a' } }), /groups/, 'u-1'],
    ['bad dryRun', review({ ...req, dryRun: 'yes' }), /dryRun/, 'u-1'],
    ['bad metadata', review({ ...req, object: { metadata: 3 } }), /metadata/, 'u-1'],
  ];
  for (const [name, body, re, uid] of cases) {
    const r = parseAdmissionReview(body);
    t.equal(r.ok, false, name);
    if (!r.ok) {
      t.match(r.message, re, name);
      t.equal(r.uid, uid, `${name}: uid salvaged`);
    }
  }
});

t.test('parseAdmissionReview accepts DELETE without object and keeps the object by reference', async (t) => {
  const del = parseAdmissionReview(review({ ...req, operation: 'DELETE', object: null, oldObject: { metadata: {} } }));
  t.equal(del.ok, true);
  const obj = { metadata: { name: 'x' }, spec: {} };
  const ok = parseAdmissionReview(review({ ...req, object: obj, dryRun: true }));
  t.ok(ok.ok);
  if (ok.ok) {
    t.equal(ok.review.request.object, obj);
    t.equal(ok.review.request.dryRun, true);
    t.strictSame(ok.review.request.userInfo, {});
  }
});

t.test('renderReview echoes uid, encodes patches, carries audit annotations', async (t) => {
  const allow = renderReview('u-1', allowed([reason('TASKRUN_SA_MAPPED')]), 'id-1');
  t.strictSame(allow, {
    apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview',
    response: { uid: 'u-1', allowed: true, auditAnnotations: { 'decision-id': 'id-1', verdict: 'allowed' } },
  });
  const ops = [{ op: 'add' as const, path: '/metadata/annotations/a~1b', value: 'x' }];
  const p = renderReview('u-2', patched(ops, [reason('POD_INJECTED')]), 'id-2');
  t.equal(p.response.patchType, 'JSONPatch');
  t.strictSame(JSON.parse(Buffer.from(p.response.patch!, 'base64').toString()), ops);
  const d = renderReview('u-3', denied([reason('TASKRUN_SA_UNMAPPED')], 'create a mapping'), 'id-3');
  t.strictSame(d.response.status, { code: 422, reason: 'Invalid', message: 'create a mapping' });
  t.equal(d.response.allowed, false);
  t.equal(d.response.patch, undefined);
});
