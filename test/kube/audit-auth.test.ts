/**
 * `auditApi.auth.mode: kubernetes` end to end: the audit app on a real SQLite store asks the
 * loopback fake API server (TokenReview, SubjectAccessReview over its RBAC model) over real HTTPS.
 * The RBAC objects are the shipped ones: manifests/base/audit-rbac.yaml (auth-delegator binding,
 * ClusterRole tekton-zscaler-auditor) and manifests/examples/auditor-rbac.yaml (alice reads
 * "payments" through a Role, group "compliance" reads everything, a ServiceAccount reads "payments"
 * through the ClusterRole), so these tests also show the manifests grant what the README says.
 */
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import { pino } from 'pino';
import { parseAllDocuments } from 'yaml';
import { buildAuditApp } from '../../webhook/http/audit.js';
import { authorize, registerAuth } from '../../webhook/http/auth.js';
import { ALLOWED_TTL_MS, AUTHENTICATED_TTL_MS, createKubernetesAuth, DENIED_TTL_MS, UNREACHABLE_MESSAGE } from '../../webhook/http/auth-kubernetes.js';
import { createKubeReviews } from '../../webhook/kube/reviews.js';
import type { ChainedRecord } from '../../webhook/core/record.js';
import { createSqliteStore } from '../../webhook/store/sqlite/store.js';
import { loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';
import { aRecord } from '../store/builders.js';
import { startFakeApiServer, WEBHOOK_USER, type FakeApiServer } from './fake-api-server.js';
import type { Attributes, FakeUser } from './fake-authz.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const GROUP = 'audit.tekton-zscaler.io';

function loadYaml(path: string): Array<Record<string, any>> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return parseAllDocuments(readFileSync(join(ROOT, path), 'utf8')).map((d) => d.toJS()).filter((o) => o !== null);
}

const USERS = {
  compliance: { username: 'carol@example.com', uid: 'uid-carol', groups: ['compliance'], extra: { 'example.com/team': ['audit'] } },
  alice: { username: 'alice@example.com', uid: 'uid-alice' },
  saAuditor: { username: 'system:serviceaccount:payments:payments-auditor', uid: 'uid-sa' },
  bob: { username: 'bob@example.com' },
} satisfies Record<string, FakeUser>;

const NAMESPACES = ['payments', 'data-science', 'sandbox'];

interface Setup {
  api: FakeApiServer;
  app: Awaited<ReturnType<typeof buildAuditApp>>;
  records: ChainedRecord[];
  clock: { ms: number };
  logs: string[];
  tokens: Record<keyof typeof USERS, string>;
  get(url: string, token?: string): Promise<{ status: number; body: any; headers: Record<string, unknown>; text: string }>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function setup(tt: Test, opts: { audiences?: string[]; rbac?: boolean } = {}): Promise<Setup> {
  const api = await startFakeApiServer();
  tt.teardown(() => api.close());
  if (opts.rbac !== false) api.authz.apply(...loadYaml('manifests/base/audit-rbac.yaml'), ...loadYaml('manifests/examples/auditor-rbac.yaml'));
  const tokens = Object.fromEntries(Object.entries(USERS).map(([k, u]) => [k, api.authz.issueToken(u, opts.audiences ? { audiences: opts.audiences } : {})])) as Setup['tokens'];

  const dir = tt.testdir({});
  const key = await loadOrCreateSigningKey(join(dir, 'signing.pem'), { create: true });
  const store = await createSqliteStore({ path: join(dir, 'decisions.db'), replica: 'tzw-0', signer: key });
  tt.teardown(() => store.close());
  const records: ChainedRecord[] = [];
  let n = 0;
  for (const ns of ['payments', 'payments', 'data-science', 'sandbox', 'payments', 'data-science']) records.push(await store.append(aRecord({ n: ++n, namespace: ns })));
  // A review rejected before its namespace was known: only cluster-wide readers may get it.
  records.push(await store.append(aRecord({ n: ++n, namespace: '', verdict: 'rejected', serviceAccounts: [] })));
  await store.checkpointNow();

  const logs: string[] = [];
  const logger = pino({ level: 'debug' }, new Writable({ write(chunk, _e, cb) { logs.push(String(chunk)); cb(); } }));
  const clock = { ms: Date.UTC(2026, 10, 25, 12) };
  const app = await buildAuditApp({
    store,
    jwks: () => toJwks(key.publicJwk),
    auth: { mode: 'kubernetes', audiences: opts.audiences ?? [], groupsClaim: 'groups' },
    kubeReviews: createKubeReviews(api.kubeConfig()),
    now: () => clock.ms,
    logger,
  });
  tt.teardown(() => app.close());
  const get: Setup['get'] = async (url, token) => {
    const res = await app.inject({ url, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
    let body: unknown;
    try {
      body = res.json();
    } catch {
      body = undefined;
    }
    return { status: res.statusCode, body, headers: res.headers, text: res.body };
  };
  return { api, app, records, clock, logs, tokens, get };
}

/** The namespaces of the records in a bundle (any bundle format: every line holding a `record`). */
function bundleNamespaces(text: string): string[] {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    const v = JSON.parse(line) as { record?: { namespace?: string } };
    if (v.record && typeof v.record.namespace === 'string') out.add(v.record.namespace);
  }
  return [...out].sort();
}

const sarCount = (s: Setup): number => s.api.authz.reviews.filter((r) => r.kind === 'SubjectAccessReview').length;
const tokenReviewCount = (s: Setup): number => s.api.authz.reviews.filter((r) => r.kind === 'TokenReview').length;

t.test('every status code, with the message an auditor acts on', async (t) => {
  const s = await setup(t);
  const { tokens, records } = s;
  const payments = records.filter((r) => r.namespace === 'payments');
  const dataScience = records.find((r) => r.namespace === 'data-science')!;
  const rejected = records.find((r) => r.namespace === '')!;
  const other = s.api.authz.issueToken(USERS.alice, { audiences: ['some-other-service'] });

  const cases: Array<{ name: string; url: string; token?: string; status: number; code?: string; message?: RegExp }> = [
    { name: 'no token', url: '/api/v1/decisions', status: 401, code: 'ERR_UNAUTHENTICATED', message: /missing bearer token.*kubectl create token/ },
    { name: 'not a bearer header', url: '/api/v1/decisions', token: 'a b', status: 401, code: 'ERR_UNAUTHENTICATED', message: /not "Bearer <token>"/ },
    { name: 'a token the API server does not know', url: '/api/v1/decisions', token: 'eyJnot.a.token', status: 401, code: 'ERR_UNAUTHENTICATED', message: /did not accept it \(\[invalid bearer token, token lookup failed\]\)/ },
    { name: 'a token for another audience', url: '/api/v1/decisions', token: other, status: 401, code: 'ERR_UNAUTHENTICATED', message: /did not accept it/ },
    { name: 'cluster-wide auditor lists everything', url: '/api/v1/decisions', token: tokens.compliance, status: 200 },
    { name: 'namespaced auditor without namespace=', url: '/api/v1/decisions', token: tokens.alice, status: 403, code: 'ERR_FORBIDDEN', message: /user "alice@example\.com" may not list decisions\.audit\.tekton-zscaler\.io across all namespaces\. If you may read only some namespaces, add namespace=<namespace>/ },
    { name: 'namespaced auditor, own namespace', url: '/api/v1/decisions?namespace=payments', token: tokens.alice, status: 200 },
    { name: 'namespaced auditor, other namespace', url: '/api/v1/decisions?namespace=data-science', token: tokens.alice, status: 403, code: 'ERR_FORBIDDEN', message: /may not list decisions\.audit\.tekton-zscaler\.io in namespace "data-science"\. Check with: kubectl auth can-i list decisions\.audit\.tekton-zscaler\.io -n data-science/ },
    { name: 'no permission at all', url: '/api/v1/decisions', token: tokens.bob, status: 403, code: 'ERR_FORBIDDEN', message: /bob@example\.com.*add namespace=/ },
    { name: 'unknown filter (authenticated, before authorization)', url: '/api/v1/decisions?namespace=payments&colour=red', token: tokens.alice, status: 400, code: 'ERR_BAD_FILTER', message: /unknown filter "colour"/ },
    { name: 'bad time', url: '/api/v1/decisions?namespace=payments&since=yesterday', token: tokens.alice, status: 400, code: 'ERR_BAD_FILTER', message: /since "yesterday" is not an RFC 3339 date-time/ },
    { name: 'get: record in own namespace', url: `/api/v1/decisions/${payments[0]!.id}`, token: tokens.alice, status: 200 },
    { name: 'get: record in another namespace', url: `/api/v1/decisions/${dataScience.id}`, token: tokens.alice, status: 403, code: 'ERR_FORBIDDEN', message: /may not get decisions\.audit\.tekton-zscaler\.io in namespace "data-science"/ },
    { name: 'get: a record without namespace needs cluster-wide get', url: `/api/v1/decisions/${rejected.id}`, token: tokens.alice, status: 403, code: 'ERR_FORBIDDEN', message: /may not get decisions\.audit\.tekton-zscaler\.io cluster-wide/ },
    { name: 'get: a record without namespace, cluster-wide auditor', url: `/api/v1/decisions/${rejected.id}`, token: tokens.compliance, status: 200 },
    { name: 'get: absent id', url: '/api/v1/decisions/01944000-0000-7000-8000-ffffffffffff', token: tokens.alice, status: 404, code: 'ERR_NOT_FOUND' },
    { name: 'export, own namespace', url: '/api/v1/decisions?format=jsonl&namespace=payments', token: tokens.alice, status: 200 },
    { name: 'export without namespace=', url: '/api/v1/decisions?format=csv', token: tokens.alice, status: 403, code: 'ERR_FORBIDDEN', message: /add namespace=/ },
    { name: 'checkpoints, namespaced auditor', url: '/api/v1/checkpoints', token: tokens.alice, status: 403, code: 'ERR_FORBIDDEN', message: /may not list checkpoints\.audit\.tekton-zscaler\.io cluster-wide.*tekton-zscaler-auditor/ },
    { name: 'checkpoints, cluster-wide auditor', url: '/api/v1/checkpoints', token: tokens.compliance, status: 200 },
    { name: 'ServiceAccount bound to the ClusterRole in one namespace', url: '/api/v1/decisions?namespace=payments', token: tokens.saAuditor, status: 200 },
    { name: 'ServiceAccount, other namespace', url: '/api/v1/decisions?namespace=sandbox', token: tokens.saAuditor, status: 403, code: 'ERR_FORBIDDEN' },
    { name: 'jwks is public', url: '/api/v1/jwks', status: 200 },
    { name: 'bundle export, own namespace', url: '/api/v1/export?namespace=payments', token: tokens.alice, status: 200 },
    { name: 'bundle export without namespace=', url: '/api/v1/export', token: tokens.alice, status: 403, code: 'ERR_FORBIDDEN', message: /add namespace=/ },
    { name: 'bundle export, other namespace', url: '/api/v1/export?namespace=sandbox', token: tokens.alice, status: 403, code: 'ERR_FORBIDDEN', message: /in namespace "sandbox"/ },
    { name: 'bundle export, everything', url: '/api/v1/export', token: tokens.compliance, status: 200 },
    { name: 'bundle export, bad time', url: '/api/v1/export?namespace=payments&until=noon', token: tokens.alice, status: 400, code: 'ERR_BAD_FILTER', message: /until "noon"/ },
    { name: 'stats, own namespace', url: '/api/v1/stats?namespace=payments&bucket=hour', token: tokens.alice, status: 200 },
    { name: 'stats without namespace=', url: '/api/v1/stats', token: tokens.alice, status: 403, code: 'ERR_FORBIDDEN', message: /add namespace=/ },
    { name: 'stats, other namespace', url: '/api/v1/stats?namespace=data-science', token: tokens.alice, status: 403, code: 'ERR_FORBIDDEN', message: /in namespace "data-science"/ },
    { name: 'stats, unknown filter', url: '/api/v1/stats?namespace=payments&colour=red', token: tokens.alice, status: 400, code: 'ERR_BAD_FILTER' },
    { name: 'stats, no token', url: '/api/v1/stats?namespace=payments', status: 401, code: 'ERR_UNAUTHENTICATED' },
  ];
  for (const c of cases) {
    const res = await s.get(c.url, c.token);
    t.equal(res.status, c.status, `${c.name}: status`);
    if (c.code) t.equal(res.body?.code, c.code, `${c.name}: code`);
    if (c.message) t.match(res.body?.message, c.message, `${c.name}: message`);
    if (c.status === 401) t.match(res.headers['www-authenticate'], /^Bearer error="invalid_token"/, `${c.name}: challenge`);
    if (c.status === 403) {
      t.match(res.headers['www-authenticate'], /^Bearer error="insufficient_scope"/, `${c.name}: challenge`);
      t.equal(res.body.missing.group, GROUP, `${c.name}: the missing permission as data`);
    }
    if (c.token) t.notOk(res.text.includes(c.token), `${c.name}: token not echoed`);
  }
  // What a 200 holds: the namespaced auditor's list and export are their namespace's records only.
  t.strictSame((await s.get('/api/v1/decisions?namespace=payments', tokens.alice)).body.items.map((r: ChainedRecord) => r.id), payments.map((r) => r.id));
  const exported = (await s.get('/api/v1/decisions?format=jsonl&namespace=payments', tokens.alice)).text.trim().split('\n').map((l) => JSON.parse(l).id);
  t.strictSame(exported.sort(), payments.map((r) => r.id).sort());
  t.equal((await s.get('/api/v1/decisions', tokens.compliance)).body.items.length, records.length);
  // The bundle and the stats of a namespaced auditor hold their namespace only.
  // (A one-namespace export is a namespace bundle: its header names the namespace; it holds no
  // other namespace's record. Which of its records it holds is the namespace evidence's business.)
  const nsBundle = (await s.get('/api/v1/export?namespace=payments', tokens.alice)).text;
  t.equal(JSON.parse(nsBundle.split('\n')[0]!).namespace, 'payments');
  t.ok(bundleNamespaces(nsBundle).every((ns) => ns === 'payments'), 'no record of another namespace');
  const stats = (await s.get('/api/v1/stats?namespace=payments', tokens.alice)).body as { namespaces: Array<{ namespace: string }> };
  t.strictSame(stats.namespaces.map((n) => n.namespace), ['payments']);
  const denied = await s.get('/api/v1/decisions?namespace=data-science', tokens.alice);
  t.strictSame(denied.body.missing, { group: GROUP, resource: 'decisions', verb: 'list', namespace: 'data-science' });
  t.equal(denied.headers['cache-control'], 'no-store');

  // No token, nor a piece of one, in any log line; the caller's name is.
  const all = s.logs.join('');
  for (const token of Object.values(tokens)) t.notOk(all.includes(token.slice(0, 20)), 'token absent from the log');
  t.ok(s.logs.some((l) => l.includes('"sub":"alice@example.com"')), 'the caller is logged by name');
});

t.test('a namespaced auditor sees exactly their namespaces, as `kubectl auth can-i` predicts', async (t) => {
  const s = await setup(t);
  for (const who of ['alice', 'saAuditor', 'compliance', 'bob'] as const) {
    for (const ns of [...NAMESPACES, '']) {
      const predicted = s.api.authz.canI(USERS[who], { group: GROUP, resource: 'decisions', verb: 'list', namespace: ns });
      const q = ns ? `?namespace=${ns}` : '';
      for (const url of [`/api/v1/decisions${q}`, `/api/v1/decisions?format=jsonl${ns ? `&namespace=${ns}` : ''}`, `/api/v1/export${q}`, `/api/v1/stats${q}`]) {
        const res = await s.get(url, s.tokens[who]);
        t.equal(res.status, predicted ? 200 : 403, `${who} ${url}: can-i says ${predicted ? 'yes' : 'no'}`);
      }
      if (!predicted) continue;
      const ids = (await s.get(`/api/v1/decisions${ns ? `?namespace=${ns}` : ''}`, s.tokens[who])).body.items.map((r: ChainedRecord) => r.id).sort();
      t.strictSame(ids, s.records.filter((r) => ns === '' || r.namespace === ns).map((r) => r.id).sort(), `${who} ${ns || '(all)'}: exactly these records`);
      const bundle = (await s.get(`/api/v1/export${ns ? `?namespace=${ns}` : ''}`, s.tokens[who])).text;
      if (ns === '') t.strictSame(bundleNamespaces(bundle), [...new Set(s.records.map((r) => r.namespace))].sort(), `${who} (all): every namespace in the bundle`);
      else t.ok(bundleNamespaces(bundle).every((n) => n === ns), `${who} ${ns}: the bundle holds no other namespace's record`);
    }
    for (const r of s.records) {
      const predicted = s.api.authz.canI(USERS[who], { group: GROUP, resource: 'decisions', verb: 'get', namespace: r.namespace });
      t.equal((await s.get(`/api/v1/decisions/${r.id}`, s.tokens[who])).status, predicted ? 200 : 403, `${who} get a record of "${r.namespace}"`);
    }
  }
  // The shipped example: alice and the ServiceAccount read "payments" and nothing else; compliance everything.
  const readable = (u: FakeUser) => NAMESPACES.filter((ns) => s.api.authz.canI(u, { group: GROUP, resource: 'decisions', verb: 'list', namespace: ns }));
  t.strictSame(readable(USERS.alice), ['payments']);
  t.strictSame(readable(USERS.saAuditor), ['payments']);
  t.strictSame(readable(USERS.compliance), NAMESPACES);
  t.strictSame(readable(USERS.bob), []);
});

t.test('the reviews sent: TokenReview with the configured audiences, SubjectAccessReview with the whole user and the attributes', async (t) => {
  const s = await setup(t, { audiences: ['tzw-audit'] });
  const record = s.records.find((r) => r.namespace === 'payments')!;
  t.equal((await s.get('/api/v1/decisions?namespace=payments', s.tokens.compliance)).status, 200);
  t.equal((await s.get(`/api/v1/decisions/${record.id}`, s.tokens.compliance)).status, 200);
  t.equal((await s.get('/api/v1/decisions?format=csv', s.tokens.compliance)).status, 200);
  t.equal((await s.get('/api/v1/checkpoints', s.tokens.compliance)).status, 200);
  const tokenReviews = s.api.authz.reviews.filter((r) => r.kind === 'TokenReview');
  t.strictSame(tokenReviews, [{ kind: 'TokenReview', caller: WEBHOOK_USER, spec: { token: `<issued to ${USERS.compliance.username}>`, audiences: ['tzw-audit'] } }]);
  const user = { user: USERS.compliance.username, uid: USERS.compliance.uid, groups: ['compliance', 'system:authenticated'], extra: USERS.compliance.extra };
  const attrs = (verb: string, resource: string, namespace: string) => ({ kind: 'SubjectAccessReview', caller: WEBHOOK_USER, spec: { ...user, resourceAttributes: { group: GROUP, resource, verb, namespace } } });
  t.strictSame(s.api.authz.reviews.filter((r) => r.kind === 'SubjectAccessReview'), [
    attrs('list', 'decisions', 'payments'),
    attrs('get', 'decisions', 'payments'),
    attrs('list', 'decisions', ''),
    attrs('list', 'checkpoints', ''),
  ]);

  // A token made for the API server, not for this audience, is refused with the way to make one.
  const apiServerToken = s.api.authz.issueToken(USERS.compliance);
  const res = await s.get('/api/v1/decisions', apiServerToken);
  t.equal(res.status, 401);
  t.match(res.body.message, /kubectl create token <serviceaccount> --audience tzw-audit|did not accept it/);
});

t.test('caches: authentication 60 s, allowed 300 s, denied 30 s, keyed by token; the API server asked once per answer', async (t) => {
  const s = await setup(t);
  const url = '/api/v1/decisions?namespace=payments';
  t.equal((await s.get(url, s.tokens.alice)).status, 200);
  t.equal((await s.get(url, s.tokens.alice)).status, 200);
  t.equal(tokenReviewCount(s), 1, 'second request: token from the cache');
  t.equal(sarCount(s), 1, 'second request: permission from the cache');

  // Concurrent requests with one new token share one TokenReview and one SubjectAccessReview.
  const fresh = s.api.authz.issueToken(USERS.alice);
  const burst = await Promise.all([1, 2, 3, 4, 5].map(() => s.get(url, fresh)));
  t.strictSame(burst.map((r) => r.status), [200, 200, 200, 200, 200]);
  t.equal(tokenReviewCount(s), 2, 'one TokenReview for five concurrent requests');
  t.equal(sarCount(s), 2, 'one SubjectAccessReview for five concurrent requests');

  // Authentication expires after 60 s: a revoked token works until then, and not after.
  s.api.authz.revokeToken(s.tokens.alice);
  s.clock.ms += AUTHENTICATED_TTL_MS - 1000;
  t.equal((await s.get(url, s.tokens.alice)).status, 200, 'revoked, 59 s later: still cached');
  s.clock.ms += 2000;
  const after = await s.get(url, s.tokens.alice);
  t.equal(after.status, 401, 'revoked, 61 s later: asked again, refused');
  t.equal(tokenReviewCount(s), 3);

  // Allowed answers last 300 s: a removed RoleBinding takes effect after that, not before.
  const token = s.api.authz.issueToken(USERS.alice);
  t.equal((await s.get(url, token)).status, 200);
  const sars = sarCount(s);
  s.api.authz.delete('RoleBinding', 'tekton-zscaler-decisions-reader', 'payments');
  s.clock.ms += ALLOWED_TTL_MS - 1000;
  // (the token's authentication expired meanwhile: asked again, still valid)
  t.equal((await s.get(url, token)).status, 200, 'binding removed, 299 s later: allowed from the cache');
  t.equal(sarCount(s), sars, 'no new SubjectAccessReview');
  s.clock.ms += 2000;
  t.equal((await s.get(url, token)).status, 403, 'binding removed, 301 s later: denied');
  t.equal(sarCount(s), sars + 1);

  // Denied answers last 30 s: a new RoleBinding takes effect after that.
  const bob = s.tokens.bob;
  t.equal((await s.get(url, bob)).status, 403);
  s.api.authz.apply({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'bob', namespace: 'payments' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'tekton-zscaler-auditor' }, subjects: [{ kind: 'User', name: USERS.bob.username }] });
  s.clock.ms += DENIED_TTL_MS - 1000;
  t.equal((await s.get(url, bob)).status, 403, 'granted, 29 s later: still denied from the cache');
  s.clock.ms += 2000;
  t.equal((await s.get(url, bob)).status, 200, 'granted, 31 s later: allowed');

  // The permission cache is per token and per (verb, resource, namespace): another namespace is asked.
  const before = sarCount(s);
  await s.get('/api/v1/decisions?namespace=sandbox', bob);
  t.equal(sarCount(s), before + 1);
});

t.test('the API server unreachable or failing: 503 with Retry-After, never cached; our own reviews refused: 500 naming the fix', async (t) => {
  const s = await setup(t);
  const url = '/api/v1/decisions?namespace=payments';
  for (const status of [500, 503, 429]) {
    s.api.authz.failNext(status);
    const res = await s.get(url, s.api.authz.issueToken(USERS.alice));
    t.equal(res.status, 503, `API server ${status}`);
    t.strictSame(res.body, { code: 'ERR_AUTH_UNAVAILABLE', message: UNREACHABLE_MESSAGE });
    t.equal(res.headers['retry-after'], '5');
  }
  // A failure is not cached: the same token works on retry.
  const token = s.api.authz.issueToken(USERS.alice);
  s.api.authz.failNext(500);
  t.equal((await s.get(url, token)).status, 503);
  t.equal((await s.get(url, token)).status, 200, 'retry succeeds');
  // The SubjectAccessReview failing after a good TokenReview is a 503 too.
  const token2 = s.api.authz.issueToken(USERS.alice);
  t.equal((await s.get(url, token2)).status, 200);
  s.api.authz.failNext(502);
  t.equal((await s.get('/api/v1/decisions?namespace=sandbox', token2)).status, 503);

  // Without system:auth-delegator the webhook may not create reviews: a 500 that tells the admin what to bind.
  s.api.authz.delete('ClusterRoleBinding', 'tekton-zscaler-webhook-auth-delegator');
  const misconfigured = await s.get(url, s.api.authz.issueToken(USERS.alice));
  t.equal(misconfigured.status, 500);
  t.equal(misconfigured.body.code, 'ERR_AUTH_MISCONFIGURED');
  t.match(misconfigured.body.message, /system:auth-delegator/);
  t.ok(s.logs.some((l) => l.includes('tokenreviews.authentication.k8s.io is forbidden')), 'the API server\'s reason is in the log');

  // Connection refused: the server is gone.
  await s.api.close();
  const gone = await s.get(url, s.api.authz.issueToken(USERS.alice));
  t.equal(gone.status, 503);
  t.equal(gone.body.message, 'cannot reach the Kubernetes API to check your token; retry');
  t.ok(s.logs.some((l) => /ECONNREFUSED/.test(l)), 'the cause is logged');
});

t.test('a route that forgets to authorize answers 500, not the data (fail closed)', async (t) => {
  const api = await startFakeApiServer();
  t.teardown(() => api.close());
  api.authz.apply(...loadYaml('manifests/base/audit-rbac.yaml'), ...loadYaml('manifests/examples/auditor-rbac.yaml'));
  const logs: string[] = [];
  const logger = pino({ level: 'info' }, new Writable({ write(chunk, _e, cb) { logs.push(String(chunk)); cb(); } }));
  const auth = createKubernetesAuth({ reviews: createKubeReviews(api.kubeConfig()), audiences: [], group: GROUP, logger });
  const app = Fastify();
  await app.register(async (scope) => {
    registerAuth(scope, auth, logger);
    scope.get('/forgot', async () => ({ secret: 'decisions' }));
    scope.get('/checked', async (req) => {
      await authorize(req, { verb: 'list', resource: 'decisions', namespace: 'payments' });
      return { ok: true };
    });
  });
  t.teardown(() => app.close());
  const token = api.authz.issueToken(USERS.alice);
  const forgot = await app.inject({ url: '/forgot', headers: { authorization: `Bearer ${token}` } });
  t.equal(forgot.statusCode, 500);
  t.notOk(forgot.body.includes('secret'));
  t.ok(logs.some((l) => l.includes('without an authorization check')));
  const checked = await app.inject({ url: '/checked', headers: { authorization: `Bearer ${token}` } });
  t.equal(checked.statusCode, 200);
  t.equal((await app.inject({ url: '/checked' })).statusCode, 401);
});

t.test('fake RBAC model: cluster-wide only through ClusterRoleBindings, namespaced through RoleBindings there', async (t) => {
  const api = await startFakeApiServer();
  t.teardown(() => api.close());
  api.authz.apply(...loadYaml('manifests/base/audit-rbac.yaml'), ...loadYaml('manifests/examples/auditor-rbac.yaml'));
  const can = (u: FakeUser, a: Partial<Attributes>) => api.authz.canI(u, { group: GROUP, resource: 'decisions', verb: 'list', namespace: '', ...a });
  t.strictSame(
    [can(USERS.alice, {}), can(USERS.alice, { namespace: 'payments' }), can(USERS.alice, { namespace: 'payments', verb: 'delete' }), can(USERS.alice, { namespace: 'payments', resource: 'checkpoints' }), can(USERS.alice, { namespace: 'payments', group: 'other.example.com' })],
    [false, true, false, false, false],
  );
  t.strictSame([can(USERS.compliance, {}), can(USERS.compliance, { resource: 'checkpoints' }), can(USERS.compliance, { verb: 'watch' })], [true, true, false]);
  t.ok(api.authz.canI({ username: WEBHOOK_USER, groups: [] }, { group: 'authentication.k8s.io', resource: 'tokenreviews', verb: 'create', namespace: '' }), 'the shipped binding lets the webhook create TokenReviews');
});
