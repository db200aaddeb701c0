import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import Database from 'better-sqlite3';
import { verifyStore } from '../../webhook/store/evidence/bundle.js';
import { createSqliteStore, SCHEMA_VERSION, type SqliteStore, type SqliteStoreOptions } from '../../webhook/store/sqlite/store.js';
import { aRecord, timeAt, WRITER } from './builders.js';
import { runStoreContract, type MakeStore } from './contract.js';
import { createHarness, createTestSigner, holdSqliteWriteLock } from './setup.js';

const { signer, jwks } = await createTestSigner(t, 'tzw-store-key-');

function tmpStoreDir(): string {
  return mkdtempSync(join(tmpdir(), 'tzw-store-'));
}

const makeSqlite: MakeStore = async (opts) => {
  const dir = tmpStoreDir();
  const path = join(dir, 'decisions.db');
  return createHarness({
    v2: true,
    open: () => createSqliteStore({ path, replica: opts.replica, signer, checkpointEvery: opts.checkpointEvery, busyTimeoutMs: 50, recoveryProbeMs: 20 }),
    jwks,
    // Another connection holding the write lock: the store's writes time out with SQLITE_BUSY.
    breakWrites: () => holdSqliteWriteLock(path),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  });
};

runStoreContract(t, 'sqlite', makeSqlite);

async function open(t: Test, extra: Partial<SqliteStoreOptions> = {}): Promise<{ store: SqliteStore; path: string; dir: string }> {
  const dir = tmpStoreDir();
  const path = join(dir, 'decisions.db');
  const store = await createSqliteStore({ path, replica: WRITER, signer, ...extra });
  t.teardown(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { store, path, dir };
}

t.test('opening fails with ERR_STORE_OPEN naming the path', async (t) => {
  const dir = tmpStoreDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'a-file'), 'x');
  writeFileSync(join(dir, 'junk.db'), 'this is not a database, just text that is long enough to be read as a header..........');
  const newer = join(dir, 'newer.db');
  const db = new Database(newer);
  db.pragma('user_version = 99');
  db.close();
  const cases: Array<[string, Partial<SqliteStoreOptions>, RegExp]> = [
    ['missing directory', { path: join(dir, 'nope', 'd.db') }, /cannot open the decision store .*nope\/d\.db: directory .*nope does not exist/],
    ['parent is a file', { path: join(dir, 'a-file', 'd.db') }, /a-file\/d\.db: .*a-file is not a directory/],
    ['not a database', { path: join(dir, 'junk.db') }, /junk\.db: file is not a database/],
    ['schema from a newer build', { path: newer }, new RegExp(`newer\\.db: its schema version 99 is newer than this build supports \\(${SCHEMA_VERSION}\\)`)],
    ['read-only and absent', { path: join(dir, 'absent.db'), readonly: true }, /absent\.db: the file does not exist/],
    ['empty path', { path: '' }, /no path given/],
  ];
  for (const [name, o, message] of cases) {
    await t.rejects(createSqliteStore({ path: '', replica: WRITER, signer, ...o }), { code: 'ERR_STORE_OPEN', message }, name);
  }
  await t.rejects(createSqliteStore({ path: join(dir, 'x.db'), replica: WRITER }), { code: 'ERR_STORE_CONFIG', message: /needs a signer/ });
  await t.rejects(createSqliteStore({ path: join(dir, 'x.db'), replica: '', signer }), { code: 'ERR_STORE_CONFIG', message: /replica/ });
  await t.rejects(createSqliteStore({ path: join(dir, 'x.db'), replica: WRITER, signer, checkpointEvery: { records: 0 } }), { code: 'ERR_STORE_CONFIG', message: /checkpointEvery\.records/ });
});

t.test('schema: WAL, synchronous=FULL, versioned', async (t) => {
  const { store, path } = await open(t);
  await store.append(aRecord());
  const db = new Database(path, { readonly: true });
  t.teardown(() => db.close());
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  // synchronous is per connection (another connection reads its own default): ask the store's own
  // connection, the one that commits. 2 = FULL (https://www.sqlite.org/pragma.html#pragma_synchronous).
  // The committing connection is the writer thread's.
  t.strictSame(await store.writerSettings(), { synchronous: 2, journalMode: 'wal' }, 'the committing connection runs synchronous=FULL, WAL');
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>).map((r) => r.name);
  t.strictSame(tables, ['anchors', 'checkpoint_ns_heads', 'checkpoints', 'counts_hour', 'counts_ns_day', 'counts_ns_hour', 'decision_sas', 'decisions', 'ns_heads', 'sqlite_stat1', 'sqlite_stat4', 'store_meta', 'unmapped_hour'].filter((n) => n !== 'sqlite_stat4' || tables.includes(n)));
});

t.test('every filter is served by an index in (time, id) order, without a sort', async (t) => {
  const { store } = await open(t);
  for (let n = 1; n <= 5; n++) await store.append(aRecord({ n }));
  const cases: Array<[string, Parameters<SqliteStore['queryPlan']>[0], RegExp]> = [
    ['all', {}, /decisions_time/],
    ['namespace + time range', { namespace: 'a', since: timeAt(0), until: timeAt(9000) }, /decisions_namespace/],
    ['serviceAccount', { serviceAccount: 'a/b' }, /SEARCH s USING PRIMARY KEY \(key=\?/],
    ['bare serviceAccount + time range', { serviceAccount: 'b', since: timeAt(0) }, /SEARCH s USING PRIMARY KEY \(key=\?/],
    ['verdict', { verdict: 'denied' }, /decisions_verdict/],
    ['kind', { kind: 'Pod' }, /decisions_kind/],
    ['taskRun', { taskRun: 'x' }, /decisions_task_run/],
    ['pipelineRun', { pipelineRun: 'x' }, /decisions_pipeline_run/],
    // The more selective filter drives (query.ts toDrivingFilter), whatever the planner's statistics say.
    ['namespace + verdict', { namespace: 'a', verdict: 'denied' }, /USING INDEX decisions_namespace/],
    ['verdict + kind', { verdict: 'denied', kind: 'PipelineRun' }, /USING INDEX decisions_verdict/],
    ['serviceAccount + namespace + verdict', { serviceAccount: 'a/b', namespace: 'a', verdict: 'denied' }, /SEARCH s USING PRIMARY KEY \(key=\?/],
  ];
  for (const [name, filter, index] of cases) {
    const plan = store.queryPlan(filter, { time: timeAt(1000), id: 'x' }).join('\n');
    t.match(plan, index, `${name}: ${plan}`);
    t.notMatch(plan, /TEMP B-TREE/, `${name}: no sort`);
    t.notMatch(plan, /SCAN (d|decisions)\b(?! USING)/, `${name}: no table scan`);
  }
  // A digest names one object: its few records are sorted, not read in index order.
  const digestPlan = store.queryPlan({ objectDigest: 'ab'.repeat(32) }).join('\n');
  t.match(digestPlan, /decisions_object_digest \(object_digest=\?\)/, `objectDigest: ${digestPlan}`);
  const byId = (store as unknown as { db: Database.Database }).db.prepare('EXPLAIN QUERY PLAN SELECT record, hash FROM decisions WHERE id = ?').all('x') as Array<{ detail: string }>;
  t.match(byId.map((r) => r.detail).join('\n'), /USING INDEX sqlite_autoindex_decisions_1 \(id=\?\)/, 'id lookup');
});

t.test('read-only stores serve reads and refuse writes', async (t) => {
  const { store, path } = await open(t);
  const r = await store.append(aRecord());
  await store.close();
  const ro = await createSqliteStore({ path, replica: WRITER, readonly: true });
  t.teardown(() => ro.close());
  t.strictSame(await ro.get(r.id), r);
  t.equal(ro.writable(), false);
  await t.rejects(ro.append(aRecord({ n: 2 })), { code: 'ERR_STORE_READONLY' });
  await t.rejects(ro.prune(timeAt(0)), { code: 'ERR_STORE_READONLY' });
  t.match(await verifyStore(ro, jwks), { ok: true, records: 1, checkpoints: 1 });
});

t.test('appends after close are refused; close is idempotent', async (t) => {
  const { store } = await open(t);
  const pending = store.append(aRecord({ n: 1 }));
  await store.close();
  t.match(await pending, { seq: 1 }, 'accepted before close, committed by close');
  await t.rejects(store.append(aRecord({ n: 2 })), { code: 'ERR_STORE_UNAVAILABLE', message: /closed/ });
  t.equal(store.writable(), false);
  await store.close();
});

t.test('group commit: appends made in one turn of the event loop share one transaction', async (t) => {
  const { store } = await open(t);
  await Promise.all(Array.from({ length: 200 }, (_, i) => store.append(aRecord({ n: i + 1 }))));
  t.strictSame(store.stats(), { commits: 1, records: 200, failedCommits: 0 });
  await store.append(aRecord({ n: 201 }));
  await store.append(aRecord({ n: 202 }));
  t.strictSame(store.stats(), { commits: 3, records: 202, failedCommits: 0 }, 'awaited appends commit one by one');
  t.strictSame(store.head().seq, 202);
});

t.test('while unwritable, appends fail fast instead of waiting for the lock each time', async (t) => {
  const logs: Array<[string, string]> = [];
  const logger = { info: (_: object, m: string) => logs.push(['info', m]), warn: (_: object, m: string) => logs.push(['warn', m]), error: (_: object, m: string) => logs.push(['error', m]) };
  const { store, path } = await open(t, { busyTimeoutMs: 1500, recoveryProbeMs: 3_600_000, logger });
  await store.append(aRecord({ n: 1 }));
  const other = new Database(path);
  other.exec('BEGIN EXCLUSIVE');
  const t0 = performance.now();
  await t.rejects(store.append(aRecord({ n: 2 })), { code: 'ERR_STORE_UNAVAILABLE', message: /could not commit 1 record\(s\): database is locked/ });
  t.ok(performance.now() - t0 >= 1400, 'the first failure waited for the lock');
  const t1 = performance.now();
  await t.rejects(store.append(aRecord({ n: 3 })), { code: 'ERR_STORE_UNAVAILABLE' });
  t.ok(performance.now() - t1 < 750, 'the next one failed at once');
  other.exec('COMMIT');
  other.close();
  t.equal((await store.append(aRecord({ n: 4 }))).seq, 2, 'a later write succeeds');
  t.equal(store.writable(), true);
  t.strictSame(logs.map(([level]) => level), ['error', 'info'], 'one error when it broke, one info when it recovered');
});

t.test('several writers share one file, each with its own chain', async (t) => {
  const { store, path } = await open(t);
  await store.append(aRecord({ n: 1 }));
  await store.close();
  const other = await createSqliteStore({ path, replica: 'tzw-1', signer });
  t.equal((await other.append(aRecord({ n: 2, replica: 'tzw-1' }))).seq, 1);
  t.equal((await other.append(aRecord({ n: 3, replica: 'tzw-1' }))).seq, 2);
  t.match(await verifyStore(other, jwks), { ok: true, records: 3, writers: 2 });
  await other.close();
});
