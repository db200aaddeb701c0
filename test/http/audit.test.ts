/**
 * The audit API against a real SQLite decision store (tmp dir), filled through store.append.
 */
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { buildAuditApp, type AuditDeps } from '../../webhook/http/audit.js';
import { CSV_COLUMNS } from '../../webhook/cli/output.js';
import type { ChainedRecord, DecisionRecord } from '../../webhook/core/record.js';
import { createSqliteStore, type SqliteStore } from '../../webhook/store/sqlite/store.js';
import { loadOrCreateSigningKey, toJwks, verifyCheckpointJws, type Jwks } from '../../webhook/store/evidence/signing.js';
import { parseCheckpointQuery, toCheckpointPage } from '../../webhook/store/checkpoint-page.js';
import type { Checkpoint } from '../../webhook/store/port.js';

const REPLICA = 'tzw-0';

/** A decision record; `n` makes the id, name and time (10:00 + n minutes) unique and ordered. */
function aRecord(n: number, o: Partial<DecisionRecord> = {}): DecisionRecord {
  const minute = String(Math.min(n, 59)).padStart(2, '0');
  return {
    id: `0193a000-0000-7000-8000-${String(n).padStart(12, '0')}`,
    time: `2026-11-25T10:${minute}:00.000000Z`,
    requestUid: `req-${n}`,
    endpoint: 'validate',
    operation: 'CREATE',
    kind: { group: 'tekton.dev', version: 'v1', kind: 'TaskRun' },
    namespace: 'payments',
    name: `build-${n}`,
    user: { username: 'system:serviceaccount:tekton-pipelines:tekton-pipelines-controller', groups: ['system:serviceaccounts'] },
    serviceAccounts: ['payments/ci-builder'],
    mode: 'enforce',
    verdict: 'allowed',
    reasons: [],
    mapping: { name: 'payments-ci', provider: 'aws-iam', subject: 'arn:aws:iam::123456789012:role/payments-ci' },
    policyTags: ['ci', 'pci'],
    patch: [],
    objectDigest: 'ab'.repeat(32),
    tekton: { taskRun: `build-${n}` },
    dryRun: false,
    replica: REPLICA,
    durationMs: 1.25,
    ...o,
  };
}

const POD = { group: '', version: 'v1', kind: 'Pod' };
const PIPELINE_RUN = { group: 'tekton.dev', version: 'v1', kind: 'PipelineRun' };
const unmapped = (sa: string) => [{ code: 'TASKRUN_SA_UNMAPPED' as const, message: `ServiceAccount ${sa} has no IdentityMapping; create one` }];

/** The fixture: every filter selects a different, known subset. Numbers are record numbers. */
const FIXTURE: DecisionRecord[] = [
  aRecord(1),
  aRecord(2, { endpoint: 'mutate', kind: POD, name: 'build-1-pod', verdict: 'patched', tekton: { taskRun: 'build-1', task: 'build' } }),
  aRecord(3, { serviceAccounts: ['payments/deployer'], verdict: 'denied', mapping: null, policyTags: [], name: 'deploy-3', tekton: { taskRun: 'deploy-3' }, reasons: unmapped('payments/deployer') }),
  aRecord(4, { namespace: 'data-science', kind: PIPELINE_RUN, name: 'train-4', serviceAccounts: ['data-science/ci-builder'], mode: 'audit', verdict: 'warned', mapping: null, policyTags: [], tekton: { pipelineRun: 'train-4' }, reasons: unmapped('data-science/ci-builder') }),
  aRecord(5, { namespace: 'data-science', kind: PIPELINE_RUN, name: 'train-5', serviceAccounts: ['data-science/trainer', 'data-science/ci-builder'], mode: 'audit', verdict: 'warned', mapping: null, policyTags: [], tekton: { pipelineRun: 'train-5' }, reasons: unmapped('data-science/ci-builder') }),
  aRecord(6, { namespace: 'data-science', endpoint: 'mutate', kind: POD, name: 'train-5-fit-pod', serviceAccounts: ['data-science/trainer'], mode: 'audit', verdict: 'patched', tekton: { taskRun: 'train-5-fit', pipelineRun: 'train-5', pipelineTask: 'fit' } }),
  aRecord(7, { namespace: '', kind: { group: '', version: '', kind: '' }, name: '', operation: '', serviceAccounts: [], mode: null, verdict: 'rejected', mapping: null, policyTags: [], tekton: {}, requestUid: '', objectDigest: null, user: { username: '', groups: [] }, reasons: [{ code: 'REVIEW_MALFORMED', message: 'body is not JSON' }] }),
  aRecord(8, { verdict: 'errored', reasons: [{ code: 'INTERNAL_ERROR', message: 'boom, "quoted", and a comma' }], user: { username: '=HYPERLINK("http://evil")', groups: [] } }),
  // Four records in the same microsecond: pages must split them by id without losing or repeating one.
  ...[9, 10, 11, 12].map((n) => aRecord(n, { time: '2026-11-25T10:09:00.000000Z', dryRun: n === 12 })),
];

function ids(...ns: number[]): string[] {
  return ns.map((n) => FIXTURE[n - 1]!.id);
}

interface Setup {
  store: SqliteStore;
  stored: ChainedRecord[];
  jwks: Jwks;
  logs: string[];
  deps: AuditDeps;
}

async function setup(tt: Test, records: DecisionRecord[] = FIXTURE): Promise<Setup> {
  const dir = tt.testdir({});
  const key = await loadOrCreateSigningKey(join(dir, 'signing.pem'), { create: true });
  const store = await createSqliteStore({ path: join(dir, 'decisions.db'), replica: REPLICA, signer: key, checkpointEvery: { records: 5, seconds: 3600 } });
  tt.teardown(() => store.close());
  const stored: ChainedRecord[] = [];
  for (const r of records) stored.push(await store.append(r));
  await store.checkpointNow();
  const logs: string[] = [];
  const logger = pino({ level: 'info' }, new Writable({ write(chunk, _e, cb) { logs.push(String(chunk)); cb(); } }));
  const jwks = toJwks(key.publicJwk);
  return { store, stored, jwks, logs, deps: { store, jwks: () => jwks, auth: { mode: 'none', groupsClaim: 'groups' }, logger } };
}

t.test('GET /api/v1/decisions: every filter selects exactly its records, in (time, id) order', async (t) => {
  const { deps, stored } = await setup(t);
  const app = await buildAuditApp(deps);
  t.teardown(() => app.close());
  const cases: Array<[string, string[]]> = [
    ['', ids(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)],
    ['namespace=payments', ids(1, 2, 3, 8, 9, 10, 11, 12)],
    ['namespace=data-science', ids(4, 5, 6)],
    ['namespace=sandbox', []],
    ['serviceAccount=payments/ci-builder', ids(1, 2, 8, 9, 10, 11, 12)],
    ['serviceAccount=ci-builder', ids(1, 2, 4, 5, 8, 9, 10, 11, 12)],
    ['serviceAccount=data-science/trainer', ids(5, 6)],
    ['serviceAccount=payments/deployer', ids(3)],
    ['verdict=warned', ids(4, 5)],
    ['verdict=rejected', ids(7)],
    ['verdict=patched', ids(2, 6)],
    ['kind=Pod', ids(2, 6)],
    ['kind=PipelineRun', ids(4, 5)],
    ['kind=TaskRun', ids(1, 3, 8, 9, 10, 11, 12)],
    ['taskRun=build-1', ids(1, 2)],
    ['taskRun=train-5-fit', ids(6)],
    ['pipelineRun=train-5', ids(5, 6)],
    ['since=2026-11-25T10:05:00Z', ids(5, 6, 7, 8, 9, 10, 11, 12)],
    ['until=2026-11-25T10:03:00Z', ids(1, 2)],
    ['since=2026-11-25T11:03:00%2B01:00&until=2026-11-25T10:06:00.000001Z', ids(3, 4, 5, 6)],
    ['since=2026-11-25T10:09:00Z', ids(9, 10, 11, 12)],
    ['namespace=payments&kind=TaskRun&until=2026-11-25T10:09:00Z', ids(1, 3, 8)],
    ['namespace=data-science&serviceAccount=ci-builder&verdict=warned', ids(4, 5)],
    ['limit=3', ids(1, 2, 3)],
  ];
  for (const [query, want] of cases) {
    const res = await app.inject({ method: 'GET', url: `/api/v1/decisions?${query}` });
    t.equal(res.statusCode, 200, query);
    const body = res.json() as { items: ChainedRecord[]; nextCursor: string | null };
    t.strictSame(body.items.map((r) => r.id), want, query || '(no filter)');
    if (!query.includes('limit')) t.equal(body.nextCursor, null, `${query}: one page`);
  }
  // Items are the stored records, whole (hash-chain fields included).
  const all = (await app.inject({ url: '/api/v1/decisions' })).json() as { items: ChainedRecord[] };
  t.strictSame(all.items, stored);
});

t.test('pagination: following nextCursor visits every record once, for any page size and filter', async (t) => {
  const { deps } = await setup(t);
  const app = await buildAuditApp(deps);
  t.teardown(() => app.close());
  for (const [filter, want] of [['', ids(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)], ['namespace=payments&', ids(1, 2, 3, 8, 9, 10, 11, 12)]] as const) {
    for (const limit of [1, 2, 3, 5, 12, 1000]) {
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const url: string = `/api/v1/decisions?${filter}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const res = await app.inject({ url });
        t.equal(res.statusCode, 200);
        const body = res.json() as { items: ChainedRecord[]; nextCursor: string | null };
        t.ok(body.items.length <= limit);
        seen.push(...body.items.map((r) => r.id));
        cursor = body.nextCursor;
        pages++;
      } while (cursor !== null && pages < 100);
      t.strictSame(seen, want, `${filter}limit=${limit}`);
      t.equal(pages, Math.max(1, Math.ceil(want.length / limit)), `${filter}limit=${limit}: no empty trailing page`);
    }
  }
});

t.test('GET /api/v1/decisions/:id: the stored record, or 404 with a message', async (t) => {
  const { deps, stored } = await setup(t);
  const app = await buildAuditApp(deps);
  t.teardown(() => app.close());
  for (const rec of [stored[0]!, stored[6]!]) {
    const res = await app.inject({ url: `/api/v1/decisions/${rec.id}` });
    t.equal(res.statusCode, 200);
    t.strictSame(res.json(), rec);
  }
  const missing = await app.inject({ url: '/api/v1/decisions/0193a000-0000-7000-8000-999999999999' });
  t.equal(missing.statusCode, 404);
  t.strictSame(missing.json(), { code: 'ERR_NOT_FOUND', message: 'no decision with id "0193a000-0000-7000-8000-999999999999"' });
  const long = await app.inject({ url: `/api/v1/decisions/${'x'.repeat(201)}` });
  t.equal(long.statusCode, 414);
  t.match(long.json(), { code: 'FST_ERR_MAX_PARAM_LENGTH', message: /max param length/ });
  const route = await app.inject({ url: '/api/v1/nothing' });
  t.equal(route.statusCode, 404);
  t.strictSame(route.json(), { code: 'ERR_NOT_FOUND', message: 'no route GET /api/v1/nothing' });
});

t.test('bad filters: 400 listing every problem', async (t) => {
  const { deps } = await setup(t);
  const app = await buildAuditApp(deps);
  t.teardown(() => app.close());
  const res = await app.inject({ url: '/api/v1/decisions?namespace=Bad_NS&verdict=maybe&limit=0&since=yesterday&kind=not%20a%20kind&cursor=%25%25&bogus=1&format=xml' });
  t.equal(res.statusCode, 400);
  const body = res.json() as { code: string; message: string; problems: string[] };
  t.equal(body.code, 'ERR_BAD_FILTER');
  t.equal(body.problems.length, 8, body.problems.join('\n'));
  for (const word of ['format', 'bogus', 'namespace', 'verdict', 'kind', 'since', 'limit', 'cursor']) {
    t.ok(body.problems.some((p) => p.includes(word)), `a problem names ${word}`);
    t.match(body.message, word);
  }

  const cases: Array<[string, RegExp]> = [
    ['verdict=allowed&verdict=denied', /verdict is given 2 times/],
    ['format=csv&format=jsonl', /format is given 2 times/],
    ['format=jsonl&limit=5', /limit does not apply to format=jsonl/],
    ['format=csv&cursor=abc', /cursor does not apply to format=csv/],
    ['since=2026-11-25T10:05:00Z&until=2026-11-25T10:00:00Z', /since .* must be before until/],
    ['namespace=', /namespace is empty/],
    ['serviceAccount=a/b/c', /serviceAccount "a\/b\/c"/],
  ];
  for (const [query, want] of cases) {
    const r = await app.inject({ url: `/api/v1/decisions?${query}` });
    t.equal(r.statusCode, 400, query);
    t.match(r.json(), { code: 'ERR_BAD_FILTER', message: want }, query);
  }
});

t.test('export: format=jsonl streams every matching record, whole', async (t) => {
  const { deps, stored } = await setup(t);
  const app = await buildAuditApp(deps);
  t.teardown(() => app.close());
  const res = await app.inject({ url: '/api/v1/decisions?format=jsonl' });
  t.equal(res.statusCode, 200);
  t.equal(res.headers['content-type'], 'application/x-ndjson; charset=utf-8');
  t.equal(res.headers['content-disposition'], 'attachment; filename="decisions.jsonl"');
  t.equal(res.headers['cache-control'], 'no-store');
  t.ok(res.body.endsWith('\n'));
  t.strictSame(res.body.trimEnd().split('\n').map((l) => JSON.parse(l) as unknown), stored);

  const filtered = await app.inject({ url: '/api/v1/decisions?format=jsonl&pipelineRun=train-5' });
  t.strictSame(filtered.body.trimEnd().split('\n').map((l) => JSON.parse(l) as unknown), [stored[4], stored[5]]);

  const none = await app.inject({ url: '/api/v1/decisions?format=jsonl&namespace=sandbox' });
  t.equal(none.statusCode, 200);
  t.equal(none.body, '');

  const json = await app.inject({ url: '/api/v1/decisions?format=json&limit=1' });
  t.strictSame((json.json() as { items: unknown[] }).items, [stored[0]]);
});

t.test('export: format=csv has the stable columns, flattened and quoted', async (t) => {
  const { deps } = await setup(t);
  const app = await buildAuditApp(deps);
  t.teardown(() => app.close());
  const res = await app.inject({ url: '/api/v1/decisions?format=csv&until=2026-11-25T10:09:00Z' });
  t.equal(res.statusCode, 200);
  t.equal(res.headers['content-type'], 'text/csv; charset=utf-8');
  const lines = res.body.trimEnd().split('\n');
  t.equal(lines[0], 'id,time,endpoint,verdict,namespace,name,kind,operation,user,serviceAccounts,mapping,provider,subject,policyTags,reasons,requestUid,dryRun,replica,durationMs,hash');
  t.strictSame(lines[0]!.split(','), [...CSV_COLUMNS]);
  t.equal(lines.length, 1 + 8);
  const hashes = (await app.inject({ url: '/api/v1/decisions?limit=8' })).json().items.map((r: ChainedRecord) => r.hash) as string[];
  t.strictSame(lines.slice(1), [
    `${ids(1)[0]},2026-11-25T10:01:00.000000Z,validate,allowed,payments,build-1,TaskRun,CREATE,system:serviceaccount:tekton-pipelines:tekton-pipelines-controller,payments/ci-builder,payments-ci,aws-iam,arn:aws:iam::123456789012:role/payments-ci,"ci,pci",,req-1,false,tzw-0,1.25,${hashes[0]}`,
    `${ids(2)[0]},2026-11-25T10:02:00.000000Z,mutate,patched,payments,build-1-pod,Pod,CREATE,system:serviceaccount:tekton-pipelines:tekton-pipelines-controller,payments/ci-builder,payments-ci,aws-iam,arn:aws:iam::123456789012:role/payments-ci,"ci,pci",,req-2,false,tzw-0,1.25,${hashes[1]}`,
    `${ids(3)[0]},2026-11-25T10:03:00.000000Z,validate,denied,payments,deploy-3,TaskRun,CREATE,system:serviceaccount:tekton-pipelines:tekton-pipelines-controller,payments/deployer,,,,,TASKRUN_SA_UNMAPPED: ServiceAccount payments/deployer has no IdentityMapping; create one,req-3,false,tzw-0,1.25,${hashes[2]}`,
    `${ids(4)[0]},2026-11-25T10:04:00.000000Z,validate,warned,data-science,train-4,PipelineRun,CREATE,system:serviceaccount:tekton-pipelines:tekton-pipelines-controller,data-science/ci-builder,,,,,TASKRUN_SA_UNMAPPED: ServiceAccount data-science/ci-builder has no IdentityMapping; create one,req-4,false,tzw-0,1.25,${hashes[3]}`,
    `${ids(5)[0]},2026-11-25T10:05:00.000000Z,validate,warned,data-science,train-5,PipelineRun,CREATE,system:serviceaccount:tekton-pipelines:tekton-pipelines-controller,"data-science/trainer,data-science/ci-builder",,,,,TASKRUN_SA_UNMAPPED: ServiceAccount data-science/ci-builder has no IdentityMapping; create one,req-5,false,tzw-0,1.25,${hashes[4]}`,
    `${ids(6)[0]},2026-11-25T10:06:00.000000Z,mutate,patched,data-science,train-5-fit-pod,Pod,CREATE,system:serviceaccount:tekton-pipelines:tekton-pipelines-controller,data-science/trainer,payments-ci,aws-iam,arn:aws:iam::123456789012:role/payments-ci,"ci,pci",,req-6,false,tzw-0,1.25,${hashes[5]}`,
    `${ids(7)[0]},2026-11-25T10:07:00.000000Z,validate,rejected,,,,,,,,,,,REVIEW_MALFORMED: body is not JSON,,false,tzw-0,1.25,${hashes[6]}`,
    // A formula-looking username is neutralised with a leading quote; quotes in a cell are doubled.
    `${ids(8)[0]},2026-11-25T10:08:00.000000Z,validate,errored,payments,build-8,TaskRun,CREATE,"'=HYPERLINK(""http://evil"")",payments/ci-builder,payments-ci,aws-iam,arn:aws:iam::123456789012:role/payments-ci,"ci,pci","INTERNAL_ERROR: boom, ""quoted"", and a comma",req-8,false,tzw-0,1.25,${hashes[7]}`,
  ]);

  const empty = await app.inject({ url: '/api/v1/decisions?format=csv&namespace=sandbox' });
  t.equal(empty.body, `${CSV_COLUMNS.join(',')}\n`, 'an empty export still has its header');
});

t.test('export streams a large store completely', async (t) => {
  const many = Array.from({ length: 3000 }, (_, i) => aRecord(i + 1, { time: `2026-11-25T11:00:00.${String(i).padStart(6, '0')}Z` }));
  const dir = t.testdir({});
  const key = await loadOrCreateSigningKey(join(dir, 'k.pem'), { create: true });
  const store = await createSqliteStore({ path: join(dir, 'd.db'), replica: REPLICA, signer: key });
  t.teardown(() => store.close());
  for (let i = 0; i < many.length; i += 500) await Promise.all(many.slice(i, i + 500).map((r) => store.append(r)));
  const app = await buildAuditApp({ store, jwks: () => toJwks(key.publicJwk), auth: { mode: 'none', groupsClaim: 'groups' }, logger: pino({ level: 'silent' }) });
  t.teardown(() => app.close());
  const jsonl = await app.inject({ url: '/api/v1/decisions?format=jsonl' });
  const lines = jsonl.body.trimEnd().split('\n');
  t.equal(lines.length, many.length);
  t.strictSame(lines.map((l) => (JSON.parse(l) as ChainedRecord).id), many.map((r) => r.id));
  const csv = await app.inject({ url: '/api/v1/decisions?format=csv' });
  t.equal(csv.body.trimEnd().split('\n').length, many.length + 1);
});

t.test('checkpoints and jwks: the signed checkpoints verify with the served keys', async (t) => {
  const { deps, store } = await setup(t);
  const app = await buildAuditApp(deps);
  t.teardown(() => app.close());
  const jwksRes = await app.inject({ url: '/api/v1/jwks' });
  t.equal(jwksRes.statusCode, 200);
  const jwks = jwksRes.json() as Jwks;
  t.strictSame(jwks, deps.jwks());
  t.notOk(JSON.stringify(jwks).includes('"d"'), 'no private key part');
  const res = await app.inject({ url: '/api/v1/checkpoints' });
  t.equal(res.statusCode, 200);
  const body = res.json() as { items: Array<{ writer: string; size: number; headHash: string; time: string; jws: string }>; anchors: unknown[] };
  t.strictSame(body, { items: await store.checkpoints(), anchors: [], nextCursor: null }, 'one page by default (up to 1000)');
  t.ok(body.items.length >= 2, 'one checkpoint every 5 records, plus the final one');
  t.equal(body.items.at(-1)?.size, FIXTURE.length);
  for (const cp of body.items) {
    const claims = await verifyCheckpointJws(cp.jws, jwks);
    t.strictSame(claims, { writer: cp.writer, size: cp.size, headHash: cp.headHash, time: cp.time });
  }
});

t.test('checkpoints are paged: limit/cursor walk them all once, latest/writer/minSize select, bad parameters are 400', async (t) => {
  const { deps, store } = await setup(t);
  const app = await buildAuditApp(deps);
  t.teardown(() => app.close());
  const all = await store.checkpoints();
  t.ok(all.length >= 2, `${all.length} checkpoints`);
  const get = async (query: string) => {
    const res = await app.inject({ url: `/api/v1/checkpoints${query}` });
    return { status: res.statusCode, body: res.json() as { items: Checkpoint[]; anchors: unknown[]; nextCursor: string | null; code?: string; message?: string } };
  };
  // Walk with pages of 2: every checkpoint exactly once, in order, then nextCursor null.
  const seen: Checkpoint[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const { status, body } = await get(`?limit=1${cursor ? `&cursor=${cursor}` : ''}`);
    t.equal(status, 200);
    t.equal(body.items.length, 1);
    seen.push(...body.items);
    cursor = body.nextCursor;
    pages++;
  } while (cursor !== null && pages < 100);
  t.strictSame(seen, all, 'the pages hold every checkpoint once, in (writer, size) order');
  t.equal(pages, all.length);
  const last = all.at(-1)!;
  t.strictSame((await get('?latest=true')).body, { items: [last], anchors: [], nextCursor: null }, 'latest: the newest per writer');
  const seq = all[0]!.size + 1;
  t.strictSame((await get(`?writer=${last.writer}&minSize=${seq}&limit=1`)).body.items, [all.find((c) => c.size >= seq)], `the first checkpoint covering seq ${seq}`);
  t.strictSame((await get('?writer=someone-else')).body, { items: [], anchors: [], nextCursor: null });
  // The page an adapter without SQL paging (PostgreSQL) gets from the same request is the same.
  for (const q of ['limit=1', 'latest=true', `writer=${last.writer}&minSize=${seq}&limit=1`, 'limit=1000', `cursor=${(await get('?limit=1')).body.nextCursor ?? ''}`]) {
    const parsed = parseCheckpointQuery(Object.fromEntries(new URLSearchParams(q)));
    if (!parsed.ok) throw new Error(parsed.errors.join());
    t.strictSame(toCheckpointPage(all, parsed.request), await store.checkpointPage?.(parsed.request), `in memory = SQL: ${q}`);
  }
  for (const [q, message] of [
    ['?limit=0', /limit "0" must be a whole number from 1 to 1000/],
    ['?limit=1001', /limit "1001"/],
    ['?cursor=not-ours', /cursor is not valid/],
    ['?latest=yes', /latest "yes" must be true or false/],
    ['?minSize=-1', /minSize "-1" must be a whole number/],
    ['?since=2026-01-01T00:00:00Z', /unknown parameter "since"/],
    ['?limit=1&limit=2', /limit is given 2 times/],
  ] as const) {
    const { status, body } = await get(q);
    t.equal(status, 400, q);
    t.match(body, { code: 'ERR_BAD_FILTER', message }, q);
  }
});

t.test('a store that fails gives a 500 JSON error, not a hang or a half response', async (t) => {
  const { deps, store, logs } = await setup(t);
  const app = await buildAuditApp(deps);
  t.teardown(() => app.close());
  await store.close();
  for (const url of ['/api/v1/decisions', '/api/v1/decisions?format=jsonl', '/api/v1/decisions?format=csv', `/api/v1/decisions/${ids(1)[0]}`, '/api/v1/checkpoints']) {
    const res = await app.inject({ url });
    t.equal(res.statusCode, 500, url);
    t.strictSame(res.json(), { code: 'ERR_INTERNAL', message: 'internal error while reading the decision store; see the server log' }, url);
  }
  t.ok(logs.some((l) => l.includes('audit API request failed')));
});

t.test('every request is logged with its caller, path and status', async (t) => {
  const { deps, logs } = await setup(t);
  const app = await buildAuditApp(deps);
  t.teardown(() => app.close());
  await app.inject({ url: '/api/v1/decisions?namespace=payments' });
  await app.inject({ url: '/api/v1/decisions/nope' });
  const lines = logs.map((l) => JSON.parse(l) as { msg: string; audit?: unknown }).filter((l) => l.msg === 'audit API request');
  t.match(lines, [
    { audit: { sub: null, method: 'GET', path: '/api/v1/decisions', status: 200 } },
    { audit: { sub: null, method: 'GET', path: '/api/v1/decisions/nope', status: 404 } },
  ]);
});
