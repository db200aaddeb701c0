/**
 * Stats from the rollups equal a count of the records themselves: random records over three days
 * (several writers' worth of namespaces, kinds, verdicts, unmapped accounts in every form the rules
 * write), random filters and windows (hour- and day-aligned and not), both buckets, on SQLite and
 * PostgreSQL; again after prune (the rollups are decremented), and on stores migrated from schema 2
 * and 3 (the rollups, the object_digest column and the account index rows' record columns backfilled
 * once). Account filters (bare name and ns/name) are counted from the account index rows alone. The expected numbers are
 * computed here in JS from the records, independently of any SQL.
 */
import t, { type Test } from 'tap';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { DecisionRecord } from '../../webhook/core/record.js';
import type { Verdict } from '../../webhook/core/verdict.js';
import type { VerifiableStore } from '../../webhook/store/port.js';
import { createSqliteStore, SCHEMA_VERSION } from '../../webhook/store/sqlite/store.js';
import { createPostgresStore } from '../../webhook/store/postgres/store.js';
import { fromStoredBody } from '../../webhook/store/evidence/body-codec.js';
import { verifyStore } from '../../webhook/store/evidence/bundle.js';
import { canonicalJson } from '../../webhook/store/evidence/canonical.js';
import { toStatsPlan, UNMAPPED_LIMIT, type DecisionStats, type StatsBucket, type StatsFilter } from '../../webhook/store/stats.js';
import { createRandom } from '../../bench/fixtures.js';
import { aRecord, idOf } from './builders.js';
import { createTestSchema, onSqliteAndPostgres, pgSkip } from './pg-support.js';
import { createTestSigner } from './setup.js';

const { signer, jwks } = await createTestSigner(t, 'tzw-rollup-key-');

const T0 = Date.UTC(2026, 0, 1);
const SPAN_MS = 3 * 86_400_000;
const NAMESPACES = ['payments', 'data-science', 'ci', 'z-last'];
const KINDS = [
  { group: '', version: 'v1', kind: 'Pod' },
  { group: 'tekton.dev', version: 'v1', kind: 'TaskRun' },
  { group: 'tekton.dev', version: 'v1', kind: 'PipelineRun' },
];
const VERDICTS: Verdict[] = ['allowed', 'patched', 'denied', 'warned', 'rejected', 'errored'];
const CODES = ['TASKRUN_SA_UNMAPPED', 'PIPELINERUN_SA_UNMAPPED', 'POD_SA_UNMAPPED'] as const;


/** A reason as the rules write it, with the `serviceAccount` newer records carry. */
const asReason = (r: { code: string; message: string; serviceAccount?: string }) => r as DecisionRecord['reasons'][number];
const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const toTime = (ms: number, micros: number) => `${new Date(ms).toISOString().slice(0, 19)}.${String(micros).padStart(6, '0')}Z`;

/** `count` records with random times (some exactly on an hour), namespaces, kinds, verdicts and unmapped reasons. */
function randomRecords(count: number, rnd: () => number): DecisionRecord[] {
  const out: DecisionRecord[] = [];
  for (let n = 1; n <= count; n++) {
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const onHour = rnd() < 0.1;
    const ms = onHour ? T0 + Math.floor(rnd() * 72) * 3_600_000 : T0 + Math.floor(rnd() * SPAN_MS);
    const verdict = pick(VERDICTS);
    const namespace = verdict === 'rejected' ? '' : pick(NAMESPACES);
    const accounts = namespace === '' ? [] : rnd() < 0.3 ? [`${namespace}/sa-${Math.floor(rnd() * 3)}`, `${namespace}/runner`] : [`${namespace}/sa-${Math.floor(rnd() * 3)}`];
    const reasons: DecisionRecord['reasons'] = [];
    if ((verdict === 'denied' || verdict === 'warned' || verdict === 'allowed') && accounts.length > 0 && rnd() < 0.7) {
      const sa = accounts[0]!;
      const form = Math.floor(rnd() * 3);
      const base = { code: pick(CODES), message: `ServiceAccount ${sa} has no IdentityMapping.` };
      reasons.push(asReason(form === 0 ? { ...base, serviceAccount: sa } : base));
      if (form === 2 && accounts.length > 1) reasons.push(asReason({ code: pick(CODES), message: `ServiceAccount ${accounts[1]} has no IdentityMapping.`, serviceAccount: accounts[1] }));
    }
    out.push(
      aRecord({
        n,
        time: toTime(ms, onHour ? 0 : Math.floor(rnd() * 1_000_000)),
        namespace,
        kind: pick(KINDS),
        verdict,
        serviceAccounts: accounts,
        reasons,
        objectDigest: (n * 7919).toString(16).padStart(64, '0'),
        tekton: rnd() < 0.5 ? { taskRun: `build-${n % 17}`, pipelineRun: `release-${n % 5}` } : { pipelineRun: `release-${n % 5}` },
      }),
    );
  }
  // In time order, as a writer appends them (prune cuts a chain prefix by time).
  return out.sort((a, b) => byText(a.time, b.time));
}

/** The unmapped accounts of a record as the stores derive them (stats.ts / the writer's `unmapped`). */
function unmappedOf(r: DecisionRecord): string[] {
  const out: string[] = [];
  for (const reason of r.reasons as Array<{ code: string; message: string; serviceAccount?: string }>) {
    if (!(CODES as readonly string[]).includes(reason.code)) continue;
    const sa = reason.serviceAccount ?? (r.serviceAccounts.length === 1 ? r.serviceAccounts[0] : /^ServiceAccount (.*?) has no IdentityMapping/.exec(reason.message)?.[1]);
    if (sa !== undefined) out.push(sa);
  }
  return out;
}

function matches(r: DecisionRecord, f: StatsFilter): boolean {
  if (f.namespace !== undefined && r.namespace !== f.namespace) return false;
  if (f.verdict !== undefined && r.verdict !== f.verdict) return false;
  if (f.kind !== undefined && r.kind.kind !== f.kind) return false;
  if (f.taskRun !== undefined && r.tekton?.taskRun !== f.taskRun) return false;
  if (f.pipelineRun !== undefined && r.tekton?.pipelineRun !== f.pipelineRun) return false;
  if (f.objectDigest !== undefined && r.objectDigest !== f.objectDigest) return false;
  if (f.since !== undefined && r.time < f.since) return false;
  if (f.until !== undefined && r.time >= f.until) return false;
  if (f.serviceAccount !== undefined) {
    const key = f.serviceAccount;
    if (!r.serviceAccounts.some((sa) => sa === key || (!key.includes('/') && sa.slice(sa.indexOf('/') + 1) === key))) return false;
  }
  return true;
}


/** The stats of `records` for a filter, counted here record by record. */
function expectedStats(records: DecisionRecord[], f: StatsFilter, bucket: StatsBucket, checkpoint: { size: number; time: string } | null): DecisionStats {
  const len = bucket === 'hour' ? 13 : 10;
  const suffix = bucket === 'hour' ? ':00:00Z' : 'T00:00:00Z';
  const buckets = new Map<string, Record<string, number>>();
  const namespaces = new Map<string, Record<string, number>>();
  const unmapped = new Map<string, { denied: number; warned: number }>();
  let count = 0;
  for (const r of records) {
    if (!matches(r, f)) continue;
    count++;
    const add = (m: Map<string, Record<string, number>>, k: string) => {
      const c = m.get(k) ?? {};
      c[r.verdict] = (c[r.verdict] ?? 0) + 1;
      m.set(k, c);
    };
    add(buckets, r.time.slice(0, len));
    add(namespaces, r.namespace);
    if (r.verdict === 'denied' || r.verdict === 'warned') {
      for (const sa of unmappedOf(r)) {
        const u = unmapped.get(sa) ?? { denied: 0, warned: 0 };
        u[r.verdict]++;
        unmapped.set(sa, u);
      }
    }
  }
  return {
    buckets: [...buckets].sort(([a], [b]) => byText(a, b)).map(([start, counts]) => ({ start: start + suffix, counts })),
    namespaces: [...namespaces].sort(([a], [b]) => byText(a, b)).map(([namespace, counts]) => ({ namespace, counts })),
    unmapped: [...unmapped]
      .sort(([a, x], [b, y]) => y.denied - x.denied || y.warned - x.warned || byText(a, b))
      .slice(0, UNMAPPED_LIMIT)
      .map(([serviceAccount, u]) => ({ serviceAccount, ...u })),
    writers: count ? [{ writer: 'tzw-0', records: count, checkpoint }] : [],
  };
}

/** Random filters: windows aligned to days and hours and not, alone and with the other filters. */
function randomFilters(rnd: () => number, records: DecisionRecord[]): StatsFilter[] {
  const anyTime = () => toTime(T0 - 3_600_000 + Math.floor(rnd() * (SPAN_MS + 7_200_000)), Math.floor(rnd() * 1_000_000));
  const hourTime = () => toTime(T0 + Math.floor(rnd() * 74) * 3_600_000, 0);
  const dayTime = () => toTime(T0 + Math.floor(rnd() * 4) * 86_400_000, 0);
  const window = (): Pick<StatsFilter, 'since' | 'until'> => {
    const kinds = [anyTime, hourTime, dayTime];
    const a = kinds[Math.floor(rnd() * 3)]!();
    const b = kinds[Math.floor(rnd() * 3)]!();
    if (a === b) return { since: a };
    const [since, until] = a < b ? [a, b] : [b, a];
    const which = rnd();
    return which < 0.2 ? { since } : which < 0.4 ? { until } : { since, until };
  };
  const some = records[Math.floor(rnd() * records.length)]!;
  const filters: StatsFilter[] = [{}, { verdict: 'denied' }, { kind: 'TaskRun' }, { verdict: 'warned', kind: 'Pod' }, { namespace: 'payments' }, { serviceAccount: 'sa-1' }, { serviceAccount: 'ci/runner' }, { objectDigest: some.objectDigest! }, { taskRun: 'build-3' }];
  // Within one hour, across an hour boundary, across a day boundary.
  filters.push({ since: toTime(T0 + 3_600_000 + 60_000, 5), until: toTime(T0 + 3_600_000 + 120_000, 0) });
  filters.push({ since: toTime(T0 + 3_600_000 + 60_000, 5), until: toTime(T0 + 2 * 3_600_000 + 120_000, 0) });
  filters.push({ since: toTime(T0 + 20 * 3_600_000 + 60_000, 5), until: toTime(T0 + 50 * 3_600_000 + 120_000, 7) });
  // An account (bare name across namespaces, or ns/name) alone and with every other filter: counted
  // from the account index rows alone; with a run or digest, through the records.
  filters.push({ serviceAccount: 'runner' }, { serviceAccount: 'sa-2', verdict: 'denied' }, { serviceAccount: 'sa-0', namespace: 'ci' }, { serviceAccount: 'payments/sa-1', kind: 'TaskRun' });
  filters.push({ serviceAccount: 'data-science/sa-0', namespace: 'payments' }, { serviceAccount: 'sa-1', taskRun: 'build-3' }, { serviceAccount: 'no-such-account' });
  const randomAccount = () => {
    const name = rnd() < 0.25 ? 'runner' : `sa-${Math.floor(rnd() * 3)}`;
    return rnd() < 0.5 ? name : `${NAMESPACES[Math.floor(rnd() * NAMESPACES.length)]}/${name}`;
  };
  for (let k = 0; k < 30; k++) {
    const extra = rnd();
    const f: StatsFilter = { ...window() };
    if (extra < 0.2) f.verdict = VERDICTS[Math.floor(rnd() * VERDICTS.length)];
    else if (extra < 0.35) f.kind = KINDS[Math.floor(rnd() * KINDS.length)]!.kind;
    else if (extra < 0.5) f.namespace = NAMESPACES[Math.floor(rnd() * NAMESPACES.length)];
    if (rnd() < 0.4) f.serviceAccount = randomAccount();
    filters.push(f);
  }
  return filters;
}

type Open = (tt: Test) => Promise<VerifiableStore & { checkpointNow(): Promise<unknown> }>;

async function compareAll(t: Test, store: VerifiableStore, records: DecisionRecord[], filters: StatsFilter[], label: string): Promise<void> {
  const cps = await store.checkpoints();
  const last = cps.at(-1);
  const checkpoint = last ? { size: last.size, time: last.time } : null;
  let failures = 0;
  for (const f of filters) {
    for (const bucket of ['hour', 'day'] as const) {
      const got = await store.loadStats(f, bucket);
      const want = expectedStats(records, f, bucket, checkpoint);
      if (canonicalJson(got) !== canonicalJson(want)) {
        failures++;
        t.strictSame(got, want, `${label}: ${JSON.stringify(f)} by ${bucket}`);
      }
    }
  }
  t.equal(failures, 0, `${label}: ${filters.length * 2} stats calls equal the records' own counts`);
}

function contract(name: string, open: Open, skip: string | false = false): void {
  t.test(name, { skip }, async (t) => {
    const store = await open(t);
    const rnd = createRandom(name.length * 7919);
    const records = randomRecords(400, rnd);
    // In batches (group commits of several records) and one by one.
    await Promise.all(records.slice(0, 200).map((r) => store.append(r)));
    for (const r of records.slice(200)) await store.append(r);
    await store.checkpointNow();
    const filters = randomFilters(rnd, records);
    await compareAll(t, store, records, filters, 'after appends');

    // Prune the first day: the rollups lose exactly the pruned records.
    const cutoff = toTime(T0 + 86_400_000 + 1_800_000, 123);
    const chainOrder = [...records];
    const firstKept = chainOrder.findIndex((r) => r.time >= cutoff);
    const result = await store.prune(cutoff);
    const kept = chainOrder.slice(firstKept === -1 ? chainOrder.length : firstKept);
    t.equal(result.deleted, chainOrder.length - kept.length, 'prune deleted the chain prefix before the cutoff');
    await compareAll(t, store, kept, filters, 'after prune');
  });
}

onSqliteAndPostgres(contract, { signer, checkpointRecords: 100_000 });

/** Puts a schema-4 SQLite file's account index back the way schema 3 left it: (key, time, decision_id) only. */
function narrowSasSql(): string {
  return `
    CREATE TABLE decision_sas_v3 (key TEXT NOT NULL, time TEXT NOT NULL, decision_id TEXT NOT NULL, PRIMARY KEY (key, time, decision_id)) WITHOUT ROWID;
    INSERT INTO decision_sas_v3 SELECT key, time, decision_id FROM decision_sas;
    DROP TABLE decision_sas;
    ALTER TABLE decision_sas_v3 RENAME TO decision_sas;
    CREATE INDEX decision_sas_decision ON decision_sas (decision_id);`;
}

/**
 * Puts a schema-4 file back the way schema 3 left it (to: 3), or schema 2 (to: 2: also no rollups,
 * no object_digest, the narrow namespace and verdict indexes, and one row in the v1 form: the
 * record's text, no compressed body).
 */
function downgradeSqlite(path: string, to: 2 | 3): void {
  const db = new Database(path);
  try {
    db.exec(narrowSasSql());
    if (to === 3) {
      db.pragma('user_version = 3');
      return;
    }
    db.exec(`
      DROP TABLE counts_ns_hour; DROP TABLE counts_ns_day; DROP TABLE counts_hour; DROP TABLE unmapped_hour;
      DROP INDEX decisions_object_digest; DROP INDEX decisions_namespace; DROP INDEX decisions_verdict;
      ALTER TABLE decisions DROP COLUMN object_digest;
      CREATE INDEX decisions_namespace ON decisions (namespace, time, id);
      CREATE INDEX decisions_verdict ON decisions (verdict, time, id);
      DELETE FROM sqlite_stat1;
    `);
    const row = db.prepare("SELECT rowid AS r, body FROM decisions WHERE unmapped IS NOT NULL AND verdict = 'denied' LIMIT 1").get() as { r: number; body: Uint8Array };
    db.prepare('UPDATE decisions SET record = ?, body = NULL, unmapped = NULL WHERE rowid = ?').run(fromStoredBody(row.body), row.r);
    db.pragma('user_version = 2');
  } finally {
    db.close();
  }
}

/** Account index rows whose record columns differ from their record's, and the rows there are. */
const SAS_CHECK_SQL = `SELECT count(*) AS n, sum(CASE WHEN s.namespace = d.namespace AND s.kind = d.kind AND s.verdict = d.verdict AND s.writer = d.writer THEN 0 ELSE 1 END) AS bad
  FROM decision_sas s JOIN decisions d ON d.id = s.decision_id`;
const sasKeyCount = (records: DecisionRecord[]) => records.reduce((n, r) => n + new Set(r.serviceAccounts.flatMap((sa) => [sa, sa.slice(sa.indexOf('/') + 1)])).size, 0);

/**
 * A store of `count` random records (seed `seed`) written by this build, put back to schema `version`
 * and opened again (which migrates it), with a read-only connection beside it.
 */
async function migratedStore(t: Test, version: 2 | 3, seed: number, count: number) {
  const dir = t.testdir({});
  const path = join(dir, 'd.db');
  const rnd = createRandom(seed);
  const records = randomRecords(count, rnd);
  const written = await createSqliteStore({ path, replica: 'tzw-0', signer, checkpointEvery: { records: 100_000, seconds: 3600 } });
  await Promise.all(records.map((r) => written.append(r)));
  await written.checkpointNow();
  await written.close();
  downgradeSqlite(path, version);
  const store = await createSqliteStore({ path, replica: 'tzw-0', signer, checkpointEvery: { records: 100_000, seconds: 3600 } });
  t.teardown(() => store.close());
  const db = new Database(path, { readonly: true });
  t.teardown(() => db.close());
  return { dir, path, rnd, records, store, db };
}

t.test('SQLite: a schema-3 store is migrated once: account index rows carry the record columns, stats exact, still verifies', async (t) => {
  t.equal(SCHEMA_VERSION, 4);
  const { path, rnd, records, store, db } = await migratedStore(t, 3, 99, 250);
  t.equal(db.pragma('user_version', { simple: true }), 4, 'migrated to schema 4');
  t.strictSame(db.prepare(SAS_CHECK_SQL).get(), { n: sasKeyCount(records), bad: 0 }, "every account index row kept, filled with its record's columns");
  await compareAll(t, store, records, randomFilters(rnd, records), 'migrated from 3');
  t.equal((await verifyStore(store, jwks)).ok, true, 'the migrated store verifies');
  const plan = (db.prepare(`EXPLAIN QUERY PLAN SELECT substr(d.time, 1, 13), d.verdict, count(*) FROM decision_sas d WHERE d.key = ? GROUP BY 1, 2`).all('sa-1') as Array<{ detail: string }>).map((r) => r.detail);
  t.match(plan.join('\n'), /SEARCH d USING PRIMARY KEY \(key=\?\)/, 'account stats read one range of the account index');

  // The copied columns are an index too: editing one (to move a record out of an account's stats) fails verification.
  await store.close();
  const rw = new Database(path);
  rw.prepare("UPDATE decision_sas SET verdict = 'allowed' WHERE decision_id = ? AND key NOT LIKE '%/%'").run(records.find((r) => r.verdict === 'denied' && r.serviceAccounts.length > 0)!.id);
  rw.close();
  const reopened = await createSqliteStore({ path, replica: 'tzw-0', readonly: true });
  t.teardown(() => reopened.close());
  const tampered = await verifyStore(reopened, jwks);
  t.equal(tampered.ok, false, "an account index row's edited verdict fails verification");
  t.match(JSON.stringify(tampered), /serviceAccount index rows/, 'naming the account index');
});

t.test('SQLite: a schema-2 store is migrated once: rollups and digests backfilled, stats exact, still verifies', async (t) => {
  const { dir, path, rnd, records, store, db } = await migratedStore(t, 2, 4242, 300);
  t.equal(db.pragma('user_version', { simple: true }), 4, 'migrated to schema 4');
  t.strictSame(db.prepare(SAS_CHECK_SQL).get(), { n: sasKeyCount(records), bad: 0 }, "account index rows filled with their record's columns");
  t.equal((db.prepare('SELECT sum(n) AS n FROM counts_hour').get() as { n: number }).n, records.length, 'the per-hour rollup counts every record once');
  t.equal((db.prepare('SELECT count(*) AS n FROM decisions WHERE object_digest IS NULL').get() as { n: number }).n, 0, 'every digest backfilled (v1 and v2 rows)');
  await compareAll(t, store, records, randomFilters(rnd, records), 'migrated');
  const some = records[123]!;
  const page = await store.query({ objectDigest: some.objectDigest!, limit: 10 });
  t.strictSame(page.items.map((r) => r.id), [some.id], 'the objectDigest filter finds the record by its backfilled digest');
  const verified = await verifyStore(store, jwks);
  t.equal(verified.ok, true, 'the migrated store verifies (index columns, the new digest column included, match the records)');

  // The writer keeps the rollups from here on.
  const more = aRecord({ n: 10_000, id: idOf(10_000), time: toTime(T0 + 3_600_000, 1), verdict: 'denied', kind: KINDS[1], reasons: [asReason({ code: 'TASKRUN_SA_UNMAPPED', message: 'ServiceAccount payments/ci-builder has no IdentityMapping.', serviceAccount: 'payments/ci-builder' })] });
  await store.append(more);
  await compareAll(t, store, [...records, more], [{}, { since: toTime(T0, 0), until: toTime(T0 + 86_400_000, 0) }], 'after a new append');
  // The digest column is an index: editing it (to hide a record from the filter) fails verification.
  await store.close();
  const rw = new Database(path);
  rw.prepare('UPDATE decisions SET object_digest = unhex(?) WHERE id = ?').run('cd'.repeat(32), records[5]!.id);
  rw.close();
  const reopened = await createSqliteStore({ path, replica: 'tzw-0', readonly: true });
  t.teardown(() => reopened.close());
  const tampered = await verifyStore(reopened, jwks);
  t.equal(tampered.ok, false, 'an edited object_digest column fails verification');
  t.match(JSON.stringify(tampered), /object_digest/, 'naming the column');
});

/** Puts a schema-4 PostgreSQL store back the way schema 3 left it (to: 3), or schema 2, one row in the v1 form (as downgradeSqlite). */
async function downgradePg(pool: import('pg').Pool, to: 2 | 3): Promise<void> {
  await pool.query(`
    ALTER TABLE decision_sas DROP CONSTRAINT decision_sas_pkey, ADD PRIMARY KEY (key, time, decision_id);
    ALTER TABLE decision_sas DROP COLUMN namespace, DROP COLUMN kind, DROP COLUMN verdict, DROP COLUMN writer;
    DELETE FROM schema_version WHERE version > 3;
  `);
  if (to === 3) return;
  await pool.query(`
    DROP TRIGGER decisions_rollup_add ON decisions; DROP TRIGGER decisions_rollup_subtract ON decisions;
    DROP FUNCTION decisions_rollup_add(); DROP FUNCTION decisions_rollup_subtract();
    DROP TABLE counts_ns_hour; DROP TABLE counts_ns_day; DROP TABLE counts_hour; DROP TABLE unmapped_hour;
    DROP INDEX decisions_object_digest; DROP INDEX decisions_namespace; DROP INDEX decisions_verdict;
    ALTER TABLE decisions DROP COLUMN object_digest;
    CREATE INDEX decisions_namespace ON decisions (namespace, time, id);
    CREATE INDEX decisions_verdict ON decisions (verdict, time, id);
    DELETE FROM schema_version WHERE version > 2;
  `);
  const row = (await pool.query<{ id: string; body: Buffer }>("SELECT id, body FROM decisions WHERE unmapped IS NOT NULL AND verdict = 'denied' ORDER BY id LIMIT 1")).rows[0]!;
  await pool.query('UPDATE decisions SET record = $1, body = NULL, unmapped = NULL WHERE id = $2', [fromStoredBody(row.body), row.id]);
}

t.test('PostgreSQL: a schema-3 store is migrated once: account index rows carry the record columns, stats exact, still verifies', { skip: pgSkip }, async (t) => {
  const schema = await createTestSchema();
  t.teardown(() => schema.drop());
  const rnd = createRandom(555);
  const records = randomRecords(200, rnd);
  const opts = { url: schema.url, replica: 'tzw-0', signer, checkpointEvery: { records: 100_000, seconds: 3600 } };
  let store = await createPostgresStore(opts);
  await Promise.all(records.map((r) => store.append(r)));
  await store.checkpointNow();
  await store.close();
  await downgradePg(schema.pool, 3);

  store = await createPostgresStore(opts);
  t.teardown(() => store.close());
  t.equal(Number((await schema.pool.query('SELECT max(version) AS v FROM schema_version')).rows[0].v), 4, 'migrated to schema 4');
  const check = (await schema.pool.query(SAS_CHECK_SQL)).rows[0];
  t.strictSame({ n: Number(check.n), bad: Number(check.bad) }, { n: sasKeyCount(records), bad: 0 }, "every account index row kept, filled with its record's columns");
  await compareAll(t, store, records, randomFilters(rnd, records), 'migrated from 3');
  t.equal((await verifyStore(store, jwks)).ok, true, 'the migrated store verifies');
  const denied = records.find((r) => r.verdict === 'denied' && r.serviceAccounts.length > 0)!;
  await schema.pool.query("UPDATE decision_sas SET verdict = 'allowed' WHERE decision_id = $1", [denied.id]);
  const tampered = await verifyStore(store, jwks);
  t.equal(tampered.ok, false, "an account index row's edited verdict fails verification");
  t.match(JSON.stringify(tampered), /serviceAccount index rows/, 'naming the account index');
});

t.test('PostgreSQL: a schema-2 store is migrated once: rollups and digests backfilled, stats exact, still verifies', { skip: pgSkip }, async (t) => {
  const schema = await createTestSchema();
  t.teardown(() => schema.drop());
  const rnd = createRandom(777);
  const records = randomRecords(200, rnd);
  const opts = { url: schema.url, replica: 'tzw-0', signer, checkpointEvery: { records: 100_000, seconds: 3600 } };
  let store = await createPostgresStore(opts);
  await Promise.all(records.map((r) => store.append(r)));
  await store.checkpointNow();
  await store.close();
  await downgradePg(schema.pool, 2);

  store = await createPostgresStore(opts);
  t.teardown(() => store.close());
  const check = (await schema.pool.query(SAS_CHECK_SQL)).rows[0];
  t.strictSame({ n: Number(check.n), bad: Number(check.bad) }, { n: sasKeyCount(records), bad: 0 }, "account index rows filled with their record's columns");
  t.equal(Number((await schema.pool.query('SELECT sum(n) AS n FROM counts_hour')).rows[0].n), records.length, 'the per-hour rollup counts every record once');
  t.equal(Number((await schema.pool.query('SELECT count(*) AS n FROM decisions WHERE object_digest IS NULL')).rows[0].n), 0, 'every digest backfilled (v1 and v2 rows)');
  await compareAll(t, store, records, randomFilters(rnd, records), 'migrated');
  const some = records[77]!;
  t.strictSame((await store.query({ objectDigest: some.objectDigest!, limit: 10 })).items.map((r) => r.id), [some.id], 'the objectDigest filter finds the record');
  t.equal((await verifyStore(store, jwks)).ok, true, 'the migrated store verifies');
});

t.test('the plan splits a window into raw edge hours, whole hours and whole days', async (t) => {
  t.strictSame(toStatsPlan(undefined, undefined), { raw: [], hours: { from: undefined, to: undefined }, days: { from: undefined, to: undefined }, edgeHours: [] });
  t.strictSame(toStatsPlan('2026-01-01T10:15:00.000000Z', '2026-01-01T10:45:00.000000Z'), { raw: [{ from: '2026-01-01T10:15:00.000000Z', to: '2026-01-01T10:45:00.000000Z' }], hours: undefined, days: undefined, edgeHours: [] }, 'within one hour: records only');
  t.strictSame(toStatsPlan('2026-01-01T10:15:00.000000Z', '2026-01-03T05:00:00.000000Z'), {
    raw: [{ from: '2026-01-01T10:15:00.000000Z', to: '2026-01-01T11:00:00.000000Z' }],
    hours: { from: '2026-01-01T11', to: '2026-01-03T05' },
    days: { from: '2026-01-02', to: '2026-01-03' },
    edgeHours: [{ from: '2026-01-01T11', to: '2026-01-02T00' }, { from: '2026-01-03T00', to: '2026-01-03T05' }],
  });
  t.strictSame(toStatsPlan('2026-01-01T00:00:00.000000Z', '2026-01-02T00:00:00.000000Z'), { raw: [], hours: { from: '2026-01-01T00', to: '2026-01-02T00' }, days: { from: '2026-01-01', to: '2026-01-02' }, edgeHours: [] }, 'a whole day');
  t.strictSame(toStatsPlan('2026-01-01T23:59:59.999999Z', undefined).hours, { from: '2026-01-02T00', to: undefined }, 'the next hour across midnight');
  t.strictSame(toStatsPlan('9999-12-31T23:30:00.000000Z', undefined).hours, { from: '9999-12-31T24', to: undefined }, 'past the last hour: after every key');
});
