/**
 * The PostgreSQL decision store against a real PostgreSQL (TZW_TEST_PG_URL): the shared contract
 * suite, then what only a shared database has — several writers, concurrent migrations, group
 * commit, idempotent forwarding of chained records, read-only opening and tamper evidence.
 * Every case works in its own throwaway schema.
 */
import t, { type Test } from 'tap';
import pg from 'pg';
import type { ChainedRecord } from '../../webhook/core/record.js';
import { verifyStore } from '../../webhook/store/evidence/bundle.js';
import { canonicalJson, sha256Hex } from '../../webhook/store/evidence/chain.js';
import { fromStoredBody, toStoredBody } from '../../webhook/store/evidence/body-codec.js';
import { openStoreForRead } from '../../webhook/store/open-url.js';
import { createPostgresStore, parsePostgresUrl, SCHEMA_MIGRATIONS, SCHEMA_VERSION, type PostgresStore, type PostgresStoreOptions } from '../../webhook/store/postgres/store.js';
import { toNamespaceBundleLines, verifyNamespaceBundleLines } from '../../webhook/store/evidence/namespace-bundle.js';
import { toNamespaceEvidenceSource } from '../../webhook/store/namespace-source.js';
import { aCheckpoint, aRecord, chainOf, idOf, WRITER } from './builders.js';
import { collect } from './ns-builders.js';
import { runStoreContract, type MakeStore } from './contract.js';
import { createTestSchema, pgSkip, PG_URL, type TestSchema } from './pg-support.js';
import { createHarness, createTestSigner } from './setup.js';

const { signer, jwks } = await createTestSigner(t, 'tzw-pg-key-');

async function openIn(schema: TestSchema, extra: Partial<PostgresStoreOptions> = {}): Promise<PostgresStore> {
  return createPostgresStore({ url: schema.url, replica: WRITER, signer, recoveryProbeMs: 20, ...extra });
}

/** A fresh schema and store for one test, removed at its end. */
async function fresh(t: Test, extra: Partial<PostgresStoreOptions> = {}): Promise<{ store: PostgresStore; schema: TestSchema }> {
  const schema = await createTestSchema();
  const store = await openIn(schema, extra);
  t.teardown(async () => {
    await store.close();
    await schema.drop();
  });
  return { store, schema };
}

t.test('PostgreSQL store', { skip: pgSkip }, async (t) => {
  const makePostgres: MakeStore = async (opts) => {
    const schema = await createTestSchema();
    // A short statement timeout so a held table lock fails writes quickly (breakWrites).
    const open = () => createPostgresStore({ url: schema.url, replica: opts.replica, signer, checkpointEvery: opts.checkpointEvery, recoveryProbeMs: 20, statementTimeoutMs: 300 });
    return createHarness({
      v2: true,
      open,
      jwks,
      async breakWrites() {
        // Another session holding the table: inserts wait, then hit the statement timeout.
        const locker = await schema.pool.connect();
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE decisions IN ACCESS EXCLUSIVE MODE');
        return async () => {
          await locker.query('ROLLBACK');
          locker.release();
        };
      },
      remove: () => schema.drop(),
    });
  };
  runStoreContract(t, 'postgres', makePostgres);

  t.test('schema: versioned, created by one of several replicas starting together', async (t) => {
    const schema = await createTestSchema();
    t.teardown(() => schema.drop());
    const stores = await Promise.all(['tzw-a', 'tzw-b', 'tzw-c', 'tzw-d'].map((replica) => openIn(schema, { replica })));
    t.teardown(() => Promise.all(stores.map((s) => s.close())));
    const versions = await schema.pool.query('SELECT version FROM schema_version ORDER BY version');
    t.strictSame(versions.rows.map((r) => r.version), Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1), 'each migration applied exactly once');
    const cols = await schema.pool.query(`SELECT column_name, collation_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'decisions' AND column_name IN ('id', 'time', 'writer') ORDER BY column_name`, [schema.name]);
    t.strictSame(cols.rows, [{ column_name: 'id', collation_name: 'C' }, { column_name: 'time', collation_name: 'C' }, { column_name: 'writer', collation_name: 'C' }], 'cursor columns compare bytewise, like SQLite');
  });

  t.test('opening fails with a clear code and message', async (t) => {
    const schema = await createTestSchema();
    t.teardown(() => schema.drop());
    const u = new URL(PG_URL!);
    u.password = 'wrong-password';
    const cases: Array<[string, PostgresStoreOptions, object]> = [
      ['no replica', { url: schema.url, replica: '', signer }, { code: 'ERR_STORE_CONFIG' }],
      ['no signer for a writable store', { url: schema.url, replica: WRITER }, { code: 'ERR_STORE_CONFIG' }],
      ['no url or pool', { replica: WRITER, signer }, { code: 'ERR_STORE_CONFIG', message: /needs a url or a pool/ }],
      ['schema not an identifier', { url: schema.url, replica: WRITER, signer, schema: 'x; DROP TABLE y' }, { code: 'ERR_STORE_CONFIG', message: /plain identifier/ }],
      ['wrong password (never printed)', { url: u.toString(), replica: WRITER, signer }, { code: 'ERR_STORE_OPEN', message: /cannot open the decision store postgres:\/\/postgres:\*\*\*@.*password authentication failed/ }],
      ['nothing listening', { url: 'postgres://u:secret@127.0.0.1:1/db', replica: WRITER, signer, connectTimeoutMs: 500 }, { code: 'ERR_STORE_OPEN', message: /127\.0\.0\.1:1\/db: connect ECONNREFUSED/ }],
      ['read-only and no store there', { url: schema.url, replica: WRITER, readonly: true }, { code: 'ERR_STORE_NOT_FOUND', message: /holds no decision store/ }],
    ];
    for (const [title, opts, want] of cases) {
      const err = await createPostgresStore(opts).then(() => undefined, (e: unknown) => e);
      t.match(err, want, title);
      t.notMatch(String((err as Error)?.message), /wrong-password|secret/, `${title}: no password in the message`);
    }
    await schema.pool.query('CREATE TABLE schema_version (version integer NOT NULL, applied text NOT NULL)');
    await schema.pool.query(`INSERT INTO schema_version VALUES (99, 'future')`);
    await t.rejects(openIn(schema), { code: 'ERR_STORE_OPEN', message: new RegExp(`schema version 99 is newer than this build supports \\(${SCHEMA_VERSION}\\)`) });
    t.throws(() => parsePostgresUrl('mysql://x/y'), { code: 'ERR_STORE_URL' });
    t.strictSame(parsePostgresUrl('postgres://a:b@h:5/db?schema=tzw&sslmode=require'), { connectionString: 'postgres://a:b@h:5/db?sslmode=require', schema: 'tzw' });
  });

  t.test('several writers share one database, each with its own chain; reads span them all', async (t) => {
    const { store: a, schema } = await fresh(t, { replica: 'tzw-a', checkpointEvery: { records: 25, seconds: 3600 } });
    const b = await openIn(schema, { replica: 'tzw-b', checkpointEvery: { records: 25, seconds: 3600 } });
    t.teardown(() => b.close());
    const ra = Array.from({ length: 60 }, (_, i) => aRecord({ n: 2 * i + 1, replica: 'tzw-a' }));
    const rb = Array.from({ length: 60 }, (_, i) => aRecord({ n: 2 * i + 2, replica: 'tzw-b', namespace: 'web', serviceAccounts: ['web/ci-builder'] }));
    // Six waves of 10 concurrent appends per writer: a checkpoint is due at 25, so the commits at
    // 30 and 60 each trigger one.
    for (let w = 0; w < 60; w += 10) await Promise.all([...ra.slice(w, w + 10).map((r) => a.append(r)), ...rb.slice(w, w + 10).map((r) => b.append(r))]);
    t.strictSame(a.head().seq, 60);
    t.strictSame(b.head().seq, 60);
    const all = await a.query({ limit: 1000 });
    t.strictSame(all.items.map((r) => r.id), Array.from({ length: 120 }, (_, i) => idOf(i + 1)), 'one (time, id) order across writers');
    t.strictSame((await b.query({ namespace: 'web', limit: 1000 })).items.map((r) => r.replica), Array(60).fill('tzw-b'));
    t.equal((await b.get(idOf(1)))?.replica, 'tzw-a', 'get finds another writer\'s record');
    await a.close();
    await b.close();
    const reader = await openStoreForRead(schema.url);
    t.teardown(() => reader.close());
    t.match(await verifyStore(reader, jwks), { ok: true, records: 120, writers: 2, checkpoints: 4, unsigned: 0 }, 'the CLI opener reads and verifies both chains');
    t.strictSame((await reader.checkpoints()).map((c) => `${c.writer}@${c.size}`), ['tzw-a@30', 'tzw-a@60', 'tzw-b@30', 'tzw-b@60']);
    await t.rejects(reader.append(aRecord({ n: 999, replica: 'tzw-reader' })), { code: 'ERR_STORE_READONLY' });
  });

  t.test('group commit: concurrent appends share a few INSERT statements', async (t) => {
    const schema = await createTestSchema();
    t.teardown(() => schema.drop());
    const pool = new pg.Pool({ connectionString: parsePostgresUrl(schema.url).connectionString, max: 4 });
    t.teardown(() => pool.end());
    const inserts: number[] = [];
    const query = pool.query.bind(pool) as (...args: unknown[]) => Promise<unknown>;
    (pool as unknown as { query: (...args: unknown[]) => Promise<unknown> }).query = (...args: unknown[]) => {
      const text = typeof args[0] === 'string' ? args[0] : '';
      if (/INSERT INTO "[^"]+"\.decisions/.test(text)) inserts.push((args[1] as unknown[][])[0]!.length);
      return query(...args);
    };
    const store = await createPostgresStore({ pool, schema: schema.name, replica: WRITER, signer });
    const stored = await Promise.all(Array.from({ length: 300 }, (_, i) => store.append(aRecord({ n: i + 1 }))));
    t.equal(inserts.reduce((a, b) => a + b, 0), 300, 'every record inserted once');
    t.ok(inserts.length <= 3, `300 appends in ${inserts.length} statement(s)`);
    t.strictSame(stored.map((r) => r.seq).sort((x, y) => x - y), Array.from({ length: 300 }, (_, i) => i + 1));
    await store.close();
    t.equal((await pool.query(`SELECT count(*)::int AS n FROM "${schema.name}".decisions`)).rows[0].n, 300, 'a caller-owned pool stays open after close');
  });

  t.test('chained records: idempotent by id, never a fork', async (t) => {
    const { store } = await fresh(t);
    const chain = chainOf(Array.from({ length: 10 }, (_, i) => aRecord({ n: i + 1 })));
    t.strictSame(await store.appendChained(chain.slice(0, 6)), { inserted: 6, skipped: 0 });
    t.strictSame(await store.appendChained(chain.slice(3)), { inserted: 4, skipped: 3 }, 'a re-sent batch (lost acknowledgement) skips what is stored');
    t.strictSame(store.head(), { seq: 10, hash: chain[9]!.hash });
    t.strictSame(await store.get(chain[4]!.id), chain[4]);

    // The same id as another record: refused, and nothing of the batch is stored.
    const next = chainOf([aRecord({ n: 11 }), aRecord({ n: 3, name: 'a different pod' }), aRecord({ n: 12 })], { seq: 10, hash: chain[9]!.hash });
    await t.rejects(store.appendChained(next), { code: 'ERR_STORE_DUPLICATE_ID', duplicates: [idOf(3)] });
    t.equal(await store.get(idOf(11)), undefined, 'the batch rolled back');
    // Another record at a stored (writer, seq): a chain conflict.
    const fork = chainOf([aRecord({ n: 20 })], { seq: 9, hash: chain[8]!.hash });
    await t.rejects(store.appendChained(fork), { code: 'ERR_STORE_CHAIN_CONFLICT' });
    // A record whose hash does not match its content.
    const forged = { ...chainOf([aRecord({ n: 30 })], { seq: 10, hash: chain[9]!.hash })[0]!, namespace: 'edited' };
    await t.rejects(store.appendChained([forged]), { code: 'ERR_STORE_INVALID_RECORD', id: idOf(30), message: /hash does not match/ });
    t.match(await verifyStore(store, jwks), { ok: true, records: 10 });
    // append() refuses a stored id too, without moving the head.
    await t.rejects(store.append(aRecord({ n: 5 })), { code: 'ERR_STORE_DUPLICATE_ID' });
    t.equal((await store.append(aRecord({ n: 11 }))).seq, 11);
  });

  t.test('values PostgreSQL text cannot hold are stored, found by id and verify', async (t) => {
    const { store } = await fresh(t);
    const odd = aRecord({ n: 1, namespace: 'bad\u0000ns', name: 'x\ud800y', serviceAccounts: ['bad\u0000ns/sa\udc00'], tekton: { taskRun: 'tr\u0000' } });
    const stored = await store.append(odd);
    t.strictSame(await store.get(odd.id), stored, 'the record comes back exactly');
    await store.append(aRecord({ n: 2 }));
    t.match(await verifyStore(store, jwks), { ok: true, records: 2 });
    t.strictSame((await store.query({ namespace: 'payments', limit: 10 })).items.map((r) => r.seq), [2]);
  });

  t.test('tampering with rows is named by verification', async (t) => {
    // The stored body is compressed (record format v2): edited as an attacker with the code would.
    const editBody = async (pool: pg.Pool): Promise<void> => {
      const row = (await pool.query<{ body: Buffer }>('SELECT body FROM decisions WHERE seq = 7')).rows[0]!;
      const edited = fromStoredBody(row.body).replace('"verdict":"patched"', '"verdict":"allowed"');
      await pool.query('UPDATE decisions SET body = $1 WHERE seq = 7', [toStoredBody(edited)]);
    };
    const cases: Array<[string, string | ((pool: pg.Pool) => Promise<void>), RegExp, number]> = [
      ['record body edited', editBody, /hash mismatch/, 7],
      ['index column edited', `UPDATE decisions SET namespace = 'other' WHERE seq = 12`, /namespace column does not match/, 12],
      ['serviceAccount index row deleted', `DELETE FROM decision_sas WHERE decision_id = (SELECT id FROM decisions WHERE seq = 5) AND key = 'ci-builder'`, /serviceAccount index rows/, 5],
      ['record deleted', `DELETE FROM decisions WHERE seq = 15`, /seq 16 found where seq 15 was expected/, 16],
      ['tail deleted', `DELETE FROM decisions WHERE seq > 17`, /signed checkpoint .* says it had 20 records/, 18],
    ];
    for (const [title, sql, problem, seq] of cases) {
      const schema = await createTestSchema();
      t.teardown(() => schema.drop());
      const store = await openIn(schema);
      for (let n = 1; n <= 20; n++) await store.append(aRecord({ n }));
      await store.checkpointNow();
      t.match(await verifyStore(store, jwks), { ok: true, records: 20 }, `${title}: verifies before the edit`);
      if (typeof sql === 'string') await schema.pool.query(sql);
      else await sql(schema.pool);
      t.match(await verifyStore(store, jwks), { ok: false, firstBad: { kind: 'record', seq, problem } }, title);
      await store.close();
    }
  });

  t.test('a checkpoint stored with edited fields or a foreign signature fails verification', async (t) => {
    const { store, schema } = await fresh(t);
    for (let n = 1; n <= 5; n++) await store.append(aRecord({ n }));
    await store.checkpointNow();
    await schema.pool.query(`UPDATE checkpoints SET head_hash = $1`, [sha256Hex(canonicalJson({ forged: true }))]);
    t.match(await verifyStore(store, jwks), { ok: false, firstBad: { kind: 'checkpoint', problem: /headHash differs from the signed payload/ } });
  });

  t.test('a store written by the v1 build upgrades: v1 records verify as before, v2 records and namespace checkpoints follow', async (t) => {
    const schema = await createTestSchema();
    t.teardown(() => schema.drop());
    // The schema and rows exactly as the build before record format v2 left them: version 1, the
    // canonical JSON text in \`record\`, a v1 checkpoint (no nsRoot).
    await schema.pool.query(SCHEMA_MIGRATIONS[0]!(`"${schema.name}".`));
    await schema.pool.query(`CREATE TABLE schema_version (version integer NOT NULL, applied text NOT NULL); INSERT INTO schema_version VALUES (1, '2026-01-01T00:00:00Z')`);
    const unmapped = { code: 'POD_SA_UNMAPPED', message: 'ServiceAccount payments/ci-builder has no IdentityMapping' } as const;
    const v1 = chainOf(Array.from({ length: 5 }, (_, i) => aRecord({ n: i + 1, namespace: i % 2 ? 'web' : 'payments', ...(i === 0 ? { verdict: 'denied', reasons: [unmapped] } : {}) })));
    for (const r of v1) {
      const { hash, ...body } = r;
      await schema.pool.query(
        `INSERT INTO decisions (id, writer, seq, time, namespace, kind, verdict, service_accounts, task_run, pipeline_run, prev_hash, hash, record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
        [r.id, r.replica, r.seq, r.time, r.namespace, r.kind.kind, r.verdict, JSON.stringify(r.serviceAccounts), r.tekton.taskRun, r.tekton.pipelineRun, r.prevHash, hash, canonicalJson(body)],
      );
      for (const key of [r.serviceAccounts[0]!, r.serviceAccounts[0]!.split('/')[1]!]) await schema.pool.query('INSERT INTO decision_sas (key, time, decision_id) VALUES ($1, $2, $3)', [key, r.time, r.id]);
    }
    const v1cp = await aCheckpoint(signer, v1, 5);
    await schema.pool.query('INSERT INTO checkpoints (writer, size, head_hash, time, jws) VALUES ($1, $2, $3, $4, $5)', [WRITER, v1cp.size, v1cp.headHash, v1cp.time, v1cp.jws]);

    let store = await openIn(schema);
    t.strictSame((await schema.pool.query<{ version: number }>('SELECT version FROM schema_version ORDER BY version')).rows.map((r) => r.version), Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1), 'migrated once to each later version');
    t.strictSame(store.head(), { seq: 5, hash: v1[4]!.hash }, 'the chain continues after the v1 records');
    const a6 = await store.append(aRecord({ n: 6, verdict: 'denied', reasons: [unmapped] }));
    t.match(a6, { seq: 6, prevHash: v1[4]!.hash, nsSeq: 1, nsPrevHash: '0'.repeat(64) }, 'the first v2 record starts its namespace chain');
    await store.append(aRecord({ n: 7, namespace: 'web' }));
    await store.checkpointNow();
    await store.close();
    // A restart continues the namespace chains from ns_heads.
    store = await openIn(schema);
    t.teardown(() => store.close());
    t.match(await store.append(aRecord({ n: 8 })), { seq: 8, nsSeq: 2, nsPrevHash: a6.hash });
    const cp = await store.checkpointNow();
    t.match(cp, { size: 8, nsSize: 2, nsRoot: /^[0-9a-f]{64}$/ });
    t.match((await store.checkpoints()).map((c) => c.nsRoot), [undefined, /^[0-9a-f]{64}$/, /^[0-9a-f]{64}$/], 'the v1 checkpoint stays as signed; the later ones commit to namespace heads');
    t.strictSame(await store.get(v1[0]!.id), v1[0], 'a v1 record reads back as stored');
    const stored = (await schema.pool.query<{ record: string; body: Buffer | null }>('SELECT record, body FROM decisions WHERE seq IN (1, 8) ORDER BY seq')).rows;
    t.ok(stored[0]!.record.length > 0 && stored[0]!.body === null && stored[1]!.record === '' && stored[1]!.body !== null, 'v1 rows keep their text, v2 rows store the compressed body');
    t.match(await verifyStore(store, jwks), { ok: true, records: 8, checkpoints: 3, unsigned: 0 }, 'v1 and v2 records verify as one chain');
    const stats = await store.loadStats({}, 'day');
    t.strictSame(stats.unmapped, [{ serviceAccount: 'payments/ci-builder', denied: 2, warned: 0 }], 'stats read the unmapped account of v1 (record text) and v2 (unmapped column) rows');
    const lines = await collect(toNamespaceBundleLines(toNamespaceEvidenceSource(store), { namespace: 'payments' }, jwks, '2026-02-01T00:00:00.000Z'));
    const result = await verifyNamespaceBundleLines(lines, jwks);
    t.match(result, { ok: true, writers: [{ writer: WRITER, status: 'complete', size: 8 }] }, 'a namespace bundle proves the v2 part complete');
    t.notOk(lines.join('\n').includes('"web"'), 'and names no other namespace');
  });
});

