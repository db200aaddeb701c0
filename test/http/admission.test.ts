import t from 'tap';
import fc from 'fast-check';
import { aContainer, aPod, aTaskRun, aPipelineRun } from '../builders.js';
import { createTestApp, getOverHttp, review, type TestApp } from './support.js';
import { canonicalJson, isCanonicalOrder, sha256Hex } from '../../webhook/store/evidence/canonical.js';
import { verifyStore } from '../../webhook/store/evidence/bundle.js';

const post = (app: TestApp['app'], url: string, payload: unknown, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url, payload: typeof payload === 'string' ? payload : JSON.stringify(payload), headers: { 'content-type': 'application/json', ...headers } });

t.test('validate: mapped TaskRun is allowed, uid echoed, record written before the response', async (t) => {
  const { app, records } = await createTestApp(t);
  const res = await post(app, '/validate', review(aTaskRun({ serviceAccountName: 'ci-builder' }), { uid: 'uid-42' }));
  t.equal(res.statusCode, 200);
  const body = res.json();
  t.equal(body.apiVersion, 'admission.k8s.io/v1');
  t.equal(body.kind, 'AdmissionReview');
  t.equal(body.response.uid, 'uid-42');
  t.equal(body.response.allowed, true);
  t.equal((await records()).length, 1);
  const rec = (await records())[0]!;
  t.equal(body.response.auditAnnotations['decision-id'], rec.id);
  t.match(rec, { requestUid: 'uid-42', endpoint: 'validate', verdict: 'allowed', namespace: 'payments', name: 'build-run', serviceAccounts: ['payments/ci-builder'], user: { username: 'alice', groups: ['devs'] }, mode: 'enforce' });
  t.match(rec.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  t.match(rec.objectDigest, /^[0-9a-f]{64}$/);
});

t.test('validate: unmapped PipelineRun in enforce is denied 422 Invalid with a fix-it message', async (t) => {
  const { app, records } = await createTestApp(t);
  const res = await post(app, '/validate', review(aPipelineRun({ serviceAccountName: 'ci-builder', taskRunSpecs: [{ pipelineTaskName: 'deploy', serviceAccountName: 'deployer' }] })));
  const { response } = res.json();
  t.equal(response.allowed, false);
  t.equal(response.status.code, 422);
  t.equal(response.status.reason, 'Invalid');
  t.match(response.status.message, /payments/);
  t.match(response.status.message, /deployer/);
  t.match(response.status.message, /IdentityMapping/);
  t.equal((await records())[0]!.verdict, 'denied');
  t.equal(response.auditAnnotations.verdict, 'denied');
});

t.test('validate: audit namespace admits with a warning and records warned', async (t) => {
  const { app, records } = await createTestApp(t);
  const res = await post(app, '/validate', review(aTaskRun({ namespace: 'data-science', serviceAccountName: 'notebook' })));
  const { response } = res.json();
  t.equal(response.allowed, true);
  t.equal(response.warnings.length, 1);
  t.match(response.warnings[0], /notebook/);
  t.equal((await records())[0]!.verdict, 'warned');
});

t.test('mutate: mapped Tekton pod gets a base64 JSON Patch and the decision id annotation', async (t) => {
  const { app, records } = await createTestApp(t);
  const res = await post(app, '/mutate', review(aPod({ serviceAccountName: 'ci-builder' })));
  const { response } = res.json();
  t.equal(response.allowed, true);
  t.equal(response.patchType, 'JSONPatch');
  const ops = JSON.parse(Buffer.from(response.patch, 'base64').toString());
  t.ok(ops.length > 0);
  t.ok(ops.every((op: { op: string }) => op.op === 'add'));
  const rec = (await records())[0]!;
  t.equal(rec.verdict, 'patched');
  t.strictSame(rec.patch, ops);
  t.match(JSON.stringify(ops), rec.id);
});

t.test('mutate: a step with envFrom is recorded with POD_ENV_OVERRIDES_ENVFROM; the patch is the same as without it', async (t) => {
  const { app, records } = await createTestApp(t);
  const step = (extra: Record<string, unknown>) => [aContainer('step-deploy', extra)];
  await post(app, '/mutate', review(aPod({ serviceAccountName: 'ci-builder', containers: step({}) })));
  const res = await post(app, '/mutate', review(aPod({ serviceAccountName: 'ci-builder', containers: step({ envFrom: [{ secretRef: { name: 'aws-creds' } }] }) })));
  t.equal(res.json().response.allowed, true);
  const [plain, withEnvFrom] = await records();
  t.strictSame(withEnvFrom?.patch.map((op) => op.path === '/metadata/annotations/tekton-zscaler.io~1decision-id' ? { ...op, value: 'id' } : op),
    plain?.patch.map((op) => op.path === '/metadata/annotations/tekton-zscaler.io~1decision-id' ? { ...op, value: 'id' } : op), 'same operations (decision id aside)');
  t.strictSame(plain?.reasons.map((r) => r.code), ['POD_INJECTED']);
  t.strictSame(withEnvFrom?.reasons.map((r) => r.code), ['POD_INJECTED', 'POD_ENV_OVERRIDES_ENVFROM']);
  t.match(withEnvFrom?.reasons[1]?.message, 'container "step-deploy" (envFrom: Secret "aws-creds") now gets AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, TZW_OIDC_TOKEN_FILE from the injection');
});

t.test('dry run: decided and logged, not stored', async (t) => {
  const { app, records, logs } = await createTestApp(t);
  const res = await post(app, '/validate', review(aTaskRun({ serviceAccountName: 'ci-builder' }), { dryRun: true }));
  t.equal(res.json().response.allowed, true);
  t.equal((await records()).length, 0);
  t.ok(logs.some((l) => l.includes('"dryRun":true')));
});

t.test('store failure (SQLite write lock held elsewhere) fails closed with 500 naming the store; /readyz over HTTP says so until it recovers', async (t) => {
  const { app, store, records, breakStore, metrics } = await createTestApp(t);
  t.strictSame(await getOverHttp(app, '/readyz'), { status: 200, json: { status: 'ready' } });
  const release = await breakStore();
  const res = await post(app, '/mutate', review(aPod({ serviceAccountName: 'ci-builder' }), { uid: 'u-store' }));
  t.equal(res.statusCode, 200);
  const { response } = res.json();
  t.equal(response.uid, 'u-store');
  t.equal(response.allowed, false);
  t.equal(response.status.code, 500);
  t.match(response.status.message, /record the decision/);
  t.equal(response.patch, undefined);
  const counted = (await metrics.decisions.get()).values.map((v) => [v.labels.verdict, v.value]);
  t.strictSame(counted, [['errored', 1]], 'counted once, as the verdict actually returned');
  t.strictSame(await getOverHttp(app, '/readyz'), { status: 503, json: { status: 'not ready', unmet: [`decision store ${store.path} not writable`] } });
  await release();
  // The store's recovery probe (every 20 ms here) finds the lock gone.
  for (let i = 0; i < 100 && !store.writable(); i++) await new Promise((r) => setTimeout(r, 20));
  t.strictSame(await getOverHttp(app, '/readyz'), { status: 200, json: { status: 'ready' } });
  const after = await post(app, '/mutate', review(aPod({ serviceAccountName: 'ci-builder' }), { uid: 'u-after' }));
  t.equal(after.json().response.allowed, true);
  t.strictSame((await records()).map((r) => [r.requestUid, r.verdict]), [['u-after', 'patched']], 'nothing was recorded while the lock was held');
});

t.test('a rejected request whose record cannot be written is still counted once, as rejected', async (t) => {
  const { app, breakStore, metrics, logs } = await createTestApp(t);
  const release = await breakStore();
  const bad = await post(app, '/validate', '{"apiVersion":');
  t.equal(bad.statusCode, 400);
  const malformed = await post(app, '/mutate', { hello: 1 });
  t.equal(malformed.statusCode, 400);
  const counted = (await metrics.decisions.get()).values.map((v) => [v.labels.endpoint, v.labels.verdict, v.value]);
  t.strictSame(counted.sort(), [['mutate', 'rejected', 1], ['validate', 'rejected', 1]]);
  t.equal(logs.filter((l) => l.includes('rejected-input record not written')).length, 2, 'each failed write is logged');
  await release();
});

t.test('a bug in the core answers errored with the uid, not a crash', async (t) => {
  const { app, state, records } = await createTestApp(t);
  state.throwInCore = true;
  const res = await post(app, '/validate', review(aTaskRun({ serviceAccountName: 'ci-builder' }), { uid: 'u-bug' }));
  const { response } = res.json();
  t.equal(response.uid, 'u-bug');
  t.equal(response.allowed, false);
  t.equal(response.status.code, 500);
  t.equal((await records())[0]!.verdict, 'errored');
  t.equal((await records())[0]!.reasons[0]!.code, 'INTERNAL_ERROR');
});

t.test('source not synced: fails closed (errored) and /readyz is 503', async (t) => {
  const { app, state } = await createTestApp(t);
  state.synced = false;
  const res = await post(app, '/validate', review(aTaskRun({ serviceAccountName: 'ci-builder' })));
  t.equal(res.json().response.allowed, false);
  t.match(res.json().response.status.message, /not loaded yet/);
  t.strictSame(await getOverHttp(app, '/readyz'), { status: 503, json: { status: 'not ready', unmet: ['object source not synced'] } });
  t.strictSame(await getOverHttp(app, '/healthz'), { status: 200, json: { status: 'ok' } });
});

t.test('bad input: clear 4xx and a rejected record (controller-runtime edge list)', async (t) => {
  const { app, records, metrics } = await createTestApp(t, { bodyLimit: 4 * 1024 * 1024 });
  const cases: Array<[string, () => Promise<{ statusCode: number; json: () => { message: string } }>, number, RegExp]> = [
    ['empty body', () => app.inject({ method: 'POST', url: '/validate', headers: { 'content-type': 'application/json' }, payload: '' }), 400, /empty/i],
    ['wrong content type', () => app.inject({ method: 'POST', url: '/validate', headers: { 'content-type': 'text/plain' }, payload: 'hi' }), 415, /content-type|media type/i],
    ['bad JSON', () => post(app, '/validate', '{"apiVersion":'), 400, /JSON/],
    ['not an AdmissionReview', () => post(app, '/mutate', { hello: 1 }), 400, /apiVersion/],
    ['missing request', () => post(app, '/mutate', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), 400, /request/],
    ['missing uid', () => post(app, '/mutate', review(aPod(), { uid: undefined })), 400, /uid/],
    ['bad operation (uid readable)', () => post(app, '/mutate', review(aPod(), { operation: 'PATCH' })), 400, /operation/],
    ['v1beta1 review', () => post(app, '/mutate', { ...review(aPod()), apiVersion: 'admission.k8s.io/v1beta1' }), 400, /apiVersion/],
    ['oversized', () => post(app, '/mutate', JSON.stringify({ pad: 'x'.repeat(4 * 1024 * 1024 + 10) })), 413, /too large|body/i],
  ];
  for (const [name, send, code, re] of cases) {
    const res = await send();
    t.equal(res.statusCode, code, name);
    t.match(res.json().message, re, name);
  }
  t.equal((await records()).length, cases.length, 'every bad request left a rejected record');
  const stored = await records();
  t.ok(stored.every((r) => r.verdict === 'rejected'));
  t.equal(stored.find((r) => r.requestUid === 'a1b2c3')?.verdict, 'rejected', 'uid salvaged when readable');
  const counted = (await metrics.decisions.get()).values.reduce((sum, v) => sum + (v.labels.verdict === 'rejected' ? v.value : 0), 0);
  t.equal(counted, cases.length, 'every rejected request counted once');
});

t.test('prototype poisoning in the body is refused (400, rejected record), literal or \\u-escaped; the same words elsewhere are not', async (t) => {
  const { app, records } = await createTestApp(t);
  const ok = JSON.stringify(review(aTaskRun({ serviceAccountName: 'ci-builder' }), { uid: 'pp' }));
  // Spliced into request.object.metadata as raw JSON text, so the escapes reach the parser as sent.
  const withMember = (member: string): string => ok.replace('"metadata":{', `"metadata":{${member},`);
  const poisoned: Array<[string, string]> = [
    ['__proto__', '"__proto__":{"polluted":true}'],
    ['__proto__ with space before the colon', '"__proto__" :{"polluted":true}'],
    ['\\u-escaped __proto__', '"\\u005f_proto__":{"polluted":true}'],
    ['fully escaped __proto__', '"\\u005f\\u005f\\u0070\\u0072\\u006f\\u0074\\u006f\\u005f\\u005f":{"polluted":true}'],
    ['constructor.prototype', '"constructor":{"prototype":{"polluted":true}}'],
    ['\\u-escaped constructor.prototype', '"constru\\u0063tor":{"prototype":{"polluted":true}}'],
  ];
  for (const [name, member] of poisoned) {
    const body = withMember(member);
    t.doesNotThrow(() => JSON.parse(body), `${name}: the body is valid JSON`);
    const res = await post(app, '/validate', body);
    t.equal(res.statusCode, 400, name);
    t.match(res.json(), { code: 'REVIEW_MALFORMED', message: /JSON/ }, name);
  }
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');
  const stored = await records();
  t.equal(stored.length, poisoned.length);
  t.ok(stored.every((r) => r.verdict === 'rejected'), 'each refused body left a rejected record');

  // The words as values, or a "constructor" member without a prototype, are ordinary data.
  for (const [name, member] of [['values', '"note":"__proto__ and constructor"'], ['constructor without prototype', '"constructor":{"name":"x"}'], ['escaped ordinary key', '"\\u0061bc":"d"']] as const) {
    const res = await post(app, '/validate', withMember(member));
    t.equal(res.statusCode, 200, name);
    t.equal(res.json().response.allowed, true, name);
  }
});

t.test('property: thousands of random and malformed reviews never crash the server', async (t) => {
  const { app } = await createTestApp(t);
  const junk = fc.oneof(fc.anything(), fc.jsonValue());
  const mangled = fc.record({
    apiVersion: fc.oneof(fc.constant('admission.k8s.io/v1'), fc.string()),
    kind: fc.oneof(fc.constant('AdmissionReview'), fc.string()),
    request: fc.oneof(
      junk,
      fc.record({
        uid: fc.oneof(fc.uuid(), junk),
        kind: fc.oneof(fc.constant({ group: '', version: 'v1', kind: 'Pod' }), fc.constant({ group: 'tekton.dev', version: 'v1', kind: 'TaskRun' }), fc.constant({ group: 'tekton.dev', version: 'v1beta1', kind: 'PipelineRun' }), junk),
        operation: fc.oneof(fc.constantFrom('CREATE', 'UPDATE', 'DELETE'), junk),
        namespace: fc.oneof(fc.constantFrom('payments', 'data-science', 'sandbox', 'nope'), junk),
        object: fc.oneof(fc.constant(aPod({ serviceAccountName: 'ci-builder' })), fc.constant(aTaskRun()), fc.constant(aPipelineRun()),
          fc.record({ metadata: fc.oneof(junk, fc.record({ labels: junk, annotations: junk, name: junk })), spec: fc.oneof(junk, fc.record({ containers: junk, serviceAccountName: junk, volumes: junk, initContainers: junk, taskRunSpecs: junk, taskRunTemplate: junk, hostNetwork: junk })) })),
        dryRun: fc.oneof(fc.boolean(), junk),
      }, { requiredKeys: [] }),
    ),
  }, { requiredKeys: [] });
  // Sent 50 at a time, as the API server does: the real store commits each wave together (one fsync
  // instead of 2000), which keeps this test fast on a busy machine. The cases are fast-check's.
  const cases = fc.sample(fc.tuple(fc.oneof(mangled, junk), fc.constantFrom('/validate', '/mutate')), { numRuns: 2000 });
  const bad: Array<{ url: string; payload: string; status: number; body: string }> = [];
  let ok = 0;
  for (let i = 0; i < cases.length; i += 50) {
    await Promise.all(cases.slice(i, i + 50).map(async ([body, url]) => {
      const payload = JSON.stringify(body) ?? 'null';
      const res = await post(app, url, payload);
      let good: boolean;
      if (res.statusCode === 200) {
        const r = res.json();
        good = r.response?.uid !== undefined && typeof r.response.allowed === 'boolean';
      } else good = res.statusCode === 400 && typeof res.json().message === 'string';
      if (good) ok++;
      else bad.push({ url, payload: payload.slice(0, 500), status: res.statusCode, body: res.body.slice(0, 500) });
    }));
  }
  t.strictSame(bad, [], 'every answer is a well-formed review or a 400 with a message');
  t.equal(ok, 2000);
});

t.test('toReviewJson writes exactly what JSON.stringify would, for every verdict and odd strings', async (t) => {
  const { toReviewJson } = await import('../../webhook/http/admission.js');
  const { renderReview } = await import('../../webhook/core/wire.js');
  const { allowed: allow, denied: deny, patched: patch, warned: warn, errored: error, rejected: reject } = await import('../../webhook/core/verdict.js');
  const { reason } = await import('../../webhook/core/reasons.js');
  await fc.assert(fc.property(fc.string(), fc.string({ unit: 'grapheme' }), fc.uuid(), (uid, text, id) => {
    const r = [reason('TASKRUN_SA_UNMAPPED', text)];
    const decisions = [allow(r), deny(r, text), warn(r, text), error(r, text), reject(r, text),
      patch([{ op: 'add', path: `/metadata/annotations/${text}`, value: { text } }], r)];
    return decisions.every((d) => {
      const review = renderReview(uid, d, id);
      return toReviewJson(review) === JSON.stringify(review);
    });
  }), { numRuns: 500 });
  t.pass('500 random cases × 6 verdicts identical');
});

t.test('objectDigest is sha256 of the RFC 8785 JSON of request.object (independent canonicalize), whatever the envelope', async (t) => {
  const { createHash } = await import('node:crypto');
  const { default: canonicalize } = (await import('canonicalize')) as unknown as { default: (v: unknown) => string };
  const { app, records } = await createTestApp(t);
  const object = aTaskRun({ serviceAccountName: 'ci-builder' });
  const want = createHash('sha256').update(canonicalize(object)).digest('hex');
  // Same object, different envelope and formatting: same digest.
  await post(app, '/validate', JSON.stringify(review(object), null, 1));
  await post(app, '/validate', JSON.stringify(review(object, { uid: 'other-uid' })));
  const [a, b] = await records();
  t.equal(a!.objectDigest, want);
  t.equal(b!.objectDigest, want);
  const del = await post(app, '/validate', review(null, { operation: 'DELETE', oldObject: object }));
  t.equal(del.statusCode, 200);
  t.equal((await records())[2]!.objectDigest, null, 'no object, no digest');
});

t.test('mutate: the patch is serialised once — the response carries it and the record hashes that same canonical text', async (t) => {
  const { app, store, jwks, records } = await createTestApp(t);
  const res = await post(app, '/mutate', review(aPod({ serviceAccountName: 'ci-builder' }), { uid: 'u-patch' }));
  const { response } = res.json();
  t.equal(response.allowed, true);
  const patch = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as unknown[];
  const text = Buffer.from(response.patch, 'base64').toString('utf8');
  t.equal(text, canonicalJson(patch), 'the response patch is already RFC 8785 (key-sorted fragments)');
  t.ok(isCanonicalOrder(patch));
  const [rec] = await records();
  t.strictSame(rec!.patch, patch, 'the record holds the patch answered');
  const { hash, ...rest } = rec!;
  t.equal(hash, sha256Hex(rec!.prevHash + canonicalJson({ ...rest })), 'the record hash is over the canonical JSON, recomputed independently');
  t.match(await verifyStore(store, jwks), { ok: true, records: 1 });
});
