/**
 * Disk full around the PostgreSQL store, for real:
 * - the spool's disk: the spool on a tmpfs this test mounts (root), filled by a file while
 *   PostgreSQL is cut: appends fail closed naming the spool and "full", the store is unwritable
 *   (readiness) saying why, "spool full" and "recovered" are logged once each, it recovers by
 *   itself when the file is removed, and everything appended reaches PostgreSQL once, verified;
 * - PostgreSQL's disk (SQLSTATE 53100 disk_full): the test schema's tables moved to a tablespace on
 *   a small tmpfs (root, and the server on this machine), filled by another table: the forwarder
 *   logs "PostgreSQL is full" once, admissions go on into the spool (still ready), and when the
 *   filler is dropped the backlog is forwarded (logged with the backlog), once each, verified;
 * - the spool filling its own disk (a volume smaller than store.spool.maxBytes): once PostgreSQL is
 *   back, the forwarded records can still be removed (the spool's reserve file) and it recovers;
 * - the classification at the adapter edge (store/full.ts), which needs neither.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import pg from 'pg';
import type { ChainedRecord } from '../../webhook/core/record.js';
import { verifyStore } from '../../webhook/store/evidence/bundle.js';
import { loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';
import { toFullCode } from '../../webhook/store/full.js';
import { createSpooledPostgresStore } from '../../webhook/store/postgres/open.js';
import { createPostgresStore } from '../../webhook/store/postgres/store.js';
import type { StoreLogger } from '../../webhook/store/sqlite/store.js';
import { aRecord, WRITER } from './builders.js';
import { createTcpProxy, createTestSchema, pgSkip, PG_URL, withSchema } from './pg-support.js';
import { mountSmallFs, smallFsUnavailable } from './small-fs.js';

const keyDir = mkdtempSync(join(tmpdir(), 'tzw-diskfull-key-'));
t.teardown(() => rmSync(keyDir, { recursive: true, force: true }));
const signer = await loadOrCreateSigningKey(join(keyDir, 'key.pem'), { create: true });
const jwks = toJwks(signer.publicJwk);
// Before any test: tap ends the file when its tests are done, and a later await would outlive it.
const noMount = smallFsUnavailable();
const noTablespace = noMount ? `a tmpfs (${noMount})` : PG_URL ? await tablespaceUnavailable() : undefined;

function captureLogger(): StoreLogger & { lines: Array<{ level: string; msg: string; obj: Record<string, unknown> }> } {
  const lines: Array<{ level: string; msg: string; obj: Record<string, unknown> }> = [];
  const at = (level: string) => (obj: object, msg: string) => lines.push({ level, msg, obj: obj as Record<string, unknown> });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

const until = async (what: () => boolean | Promise<boolean>, ms = 10_000) => {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (await what()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return what();
};

t.test('toFullCode: which errors mean "no space" (SQLite, the OS, PostgreSQL 53100), through cause chains', async (t) => {
  const pgDiskFull = Object.assign(new Error('could not extend file "pg_tblspc/16390/PG_15_202209061/16384/16412": No space left on device'), { code: '53100', severity: 'ERROR' });
  const cases: Array<[string, unknown, string | undefined]> = [
    ['SQLite full', Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }), 'SQLITE_FULL'],
    ['ENOSPC from fs', Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }), 'ENOSPC'],
    ['quota', Object.assign(new Error('EDQUOT'), { code: 'EDQUOT' }), 'EDQUOT'],
    ['PostgreSQL 53100 wrapped by the store', Object.assign(new Error('the decision store … could not commit 3 chained record(s): could not extend file'), { code: 'ERR_STORE_UNAVAILABLE', cause: pgDiskFull }), '53100'],
    ['PostgreSQL 53200 out_of_memory is not a full disk', Object.assign(new Error('out of memory'), { code: '53200' }), undefined],
    ['PostgreSQL 53300 too_many_connections is not', Object.assign(new Error('sorry, too many clients already'), { code: '53300' }), undefined],
    ['SQLite busy', Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' }), undefined],
    ['connection refused', Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), undefined],
    ['not an error', 'ENOSPC', undefined],
    ['null', null, undefined],
    ['a cycle', (() => { const e = new Error('loop') as Error & { cause?: unknown }; e.cause = e; return e; })(), undefined],
  ];
  t.strictSame(cases.map(([name, err]) => [name, toFullCode(err)]), cases.map(([name, , want]) => [name, want]));
});


t.test('disk full around PostgreSQL', { skip: pgSkip }, async (t) => {
  const spoolSkip = noMount ? `no size-limited filesystem for the spool: ${noMount} (the SQLite store's max_page_count fallback is in test/server/disk-full.test.ts)` : false;
  t.test('the spool\'s disk fills (ENOSPC) while PostgreSQL is cut: fails closed, recovers by itself, nothing appended is lost', { skip: spoolSkip }, async (t) => {
    const small = mountSmallFs(t, 4 * 1024 * 1024);
    if (!small.ok) throw new Error(small.why);
    const schema = await createTestSchema();
    t.teardown(() => schema.drop());
    const proxy = await createTcpProxy({ up: false });
    t.teardown(() => proxy.close());
    const logger = captureLogger();
    const spoolPath = join(small.fs.dir, 'spool.db');
    const store = await createSpooledPostgresStore({
      postgres: { url: withSchema(PG_URL!, schema.name, proxy.port), replica: WRITER, signer, connectTimeoutMs: 1000, recoveryProbeMs: 50 },
      // A limit far above the disk: the disk fills first (a PVC smaller than store.spool.maxBytes).
      spool: { path: spoolPath, maxBytes: 1024 * 1024 * 1024, probeMs: 20 },
      startWaitMs: 300, minBackoffMs: 20, maxBackoffMs: 200, drainTimeoutMs: 2000, logger,
    });
    t.teardown(() => store.close());
    const stored: ChainedRecord[] = [];
    let n = 0;
    for (let i = 0; i < 50; i++) stored.push(await store.append(aRecord({ n: ++n })));
    t.ok(small.fs.fill() > 0, 'a file takes the rest of the spool\'s disk');

    const refused: Array<{ n: number; message: string }> = [];
    for (let i = 0; i < 2000 && refused.length < 10; i++) {
      const k = ++n;
      await store.append(aRecord({ n: k })).then((r) => stored.push(r), (err: Error & { code?: string }) => refused.push({ n: k, message: `${err.code}: ${err.message}` }));
    }
    t.equal(refused.length, 10, `appends fail once the disk is full (${stored.length} were spooled)`);
    t.match(refused[0]!.message, new RegExp(`^ERR_STORE_UNAVAILABLE: the decision spool ${spoolPath} is full \\((SQLITE_FULL|ENOSPC): no space on its disk\\): could not commit`), 'failing closed, naming the spool and that it is full');
    t.equal(store.writable(), false, 'unwritable: /readyz is unready');
    t.match(store.unwritableReason?.(), new RegExp(`^decision spool ${spoolPath} full \\((SQLITE_FULL|ENOSPC): no space on its disk\\)$`));
    for (let i = 0; i < 20; i++) await store.append(aRecord({ n: ++n })).then(() => t.fail('appended on a full disk'), () => undefined);
    const full = logger.lines.filter((l) => /^decision spool full \(no space on its disk\)/.test(l.msg));
    t.equal(full.length, 1, '"spool full" logged once, not per refusal');
    t.match(full[0], { level: 'error', obj: { spool: spoolPath, fullCode: /SQLITE_FULL|ENOSPC/, backlog: stored.length } });

    small.fs.free();
    t.ok(await until(() => store.writable()), 'writable again without a restart (the probe found the space)');
    const recovered = logger.lines.filter((l) => /^decision spool recovered/.test(l.msg));
    t.equal(recovered.length, 1, '"recovered" logged once');
    t.match(recovered[0], { level: 'info', obj: { wasFull: true, refusedRecords: Number, backlog: stored.length } });
    t.ok((recovered[0]!.obj.refusedRecords as number) >= 30, 'with the records refused meanwhile');
    for (let i = 0; i < 20; i++) stored.push(await store.append(aRecord({ n: ++n })));

    proxy.up();
    await store.drained(20_000);
    const rows = await schema.pool.query<{ id: string; n: string }>('SELECT id, count(*) OVER (PARTITION BY id) AS n FROM decisions ORDER BY seq');
    t.strictSame(rows.rows.map((r) => r.id), stored.map((r) => r.id), 'PostgreSQL holds every appended decision, in chain order');
    t.ok(rows.rows.every((r) => r.n === '1'), 'each once');
    t.match(await verifyStore(store, jwks), { ok: true, records: stored.length }, 'the chain verifies');
  });

  t.test('the spool fills its own disk while PostgreSQL is cut (a PVC smaller than store.spool.maxBytes): once PostgreSQL is back the drain frees it and it recovers', { skip: spoolSkip }, async (t) => {
    const small = mountSmallFs(t, 4 * 1024 * 1024);
    if (!small.ok) throw new Error(small.why);
    const schema = await createTestSchema();
    t.teardown(() => schema.drop());
    const proxy = await createTcpProxy({ up: false });
    t.teardown(() => proxy.close());
    const logger = captureLogger();
    const store = await createSpooledPostgresStore({
      postgres: { url: withSchema(PG_URL!, schema.name, proxy.port), replica: WRITER, signer, connectTimeoutMs: 1000, recoveryProbeMs: 50 },
      spool: { path: join(small.fs.dir, 'spool.db'), maxBytes: 1024 * 1024 * 1024, probeMs: 20 },
      startWaitMs: 300, minBackoffMs: 20, maxBackoffMs: 200, drainTimeoutMs: 2000, logger,
    });
    t.teardown(() => store.close());
    const stored: ChainedRecord[] = [];
    let n = 0;
    let refused = 0;
    for (let i = 0; i < 20_000 && refused < 5; i++) await store.append(aRecord({ n: ++n })).then((r) => stored.push(r), () => refused++);
    t.match(logger.lines.find((l) => /^store\.spool\.maxBytes is larger than the spool's volume/.test(l.msg)), { level: 'warn', obj: { maxBytes: 1024 * 1024 * 1024, volumeBytes: 4 * 1024 * 1024 } }, 'warned at start that the volume is smaller than the limit');
    t.equal(refused, 5, `the disk is full after ${stored.length} spooled decisions`);
    t.equal(store.writable(), false, 'unready');
    proxy.up();
    await store.drained(30_000);
    t.ok(await until(() => store.writable()), 'writable again once the backlog is forwarded and removed');
    t.ok(logger.lines.some((l) => /^decision spool disk full: released the reserve file/.test(l.msg)), 'the reserve file gave the removals their room');
    for (let i = 0; i < 20; i++) stored.push(await store.append(aRecord({ n: ++n })));
    await store.drained(10_000);
    const rows = await schema.pool.query<{ id: string }>('SELECT id FROM decisions ORDER BY seq');
    t.strictSame(rows.rows.map((r) => r.id), stored.map((r) => r.id), 'every appended decision in PostgreSQL once, in chain order');
    t.match(await verifyStore(store, jwks), { ok: true, records: stored.length });
  });

  const tablespaceSkip = noTablespace ? `53100 from a real server needs ${noTablespace}; the SQLSTATE's classification is tested above` : false;
  t.test('PostgreSQL\'s disk fills (SQLSTATE 53100): decisions wait in the spool, the replica stays ready, the backlog is forwarded once when space is back', { skip: tablespaceSkip }, async (t) => {
    const pgUser = execFileSync('id', ['-u', 'postgres']).toString().trim();
    const pgGroup = execFileSync('id', ['-g', 'postgres']).toString().trim();
    const small = mountSmallFs(t, 8 * 1024 * 1024, { uid: Number(pgUser), gid: Number(pgGroup) });
    if (!small.ok) throw new Error(small.why);
    const admin = new pg.Pool({ connectionString: PG_URL, max: 1 });
    admin.on('error', () => undefined);
    const tablespace = `tzw_full_${randomBytes(4).toString('hex')}`;
    await admin.query(`CREATE TABLESPACE ${tablespace} LOCATION '${small.fs.dir}'`);
    const schema = await createTestSchema();
    // Teardowns run last-registered first: the schema (and its tables) goes before the tablespace.
    t.teardown(async () => {
      await admin.query(`DROP TABLESPACE IF EXISTS ${tablespace}`);
      await admin.end();
    });
    t.teardown(() => schema.drop());

    // Create the schema's tables, then move every one (and its indexes) onto the small tablespace.
    const first = await createPostgresStore({ url: schema.url, replica: WRITER, signer });
    await first.close();
    for (const { tablename } of (await admin.query<{ tablename: string }>('SELECT tablename FROM pg_tables WHERE schemaname = $1', [schema.name])).rows) {
      await admin.query(`ALTER TABLE ${schema.name}.${tablename} SET TABLESPACE ${tablespace}`);
    }
    for (const { indexname } of (await admin.query<{ indexname: string }>('SELECT indexname FROM pg_indexes WHERE schemaname = $1', [schema.name])).rows) {
      await admin.query(`ALTER INDEX ${schema.name}.${indexname} SET TABLESPACE ${tablespace}`);
    }

    const logger = captureLogger();
    const dir = mkdtempSync(join(tmpdir(), 'tzw-diskfull-spool-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const store = await createSpooledPostgresStore({
      postgres: { url: schema.url, replica: WRITER, signer, connectTimeoutMs: 1000, recoveryProbeMs: 50 },
      spool: { path: join(dir, 'spool.db'), maxBytes: 64 * 1024 * 1024, probeMs: 20 },
      startWaitMs: 3000, minBackoffMs: 20, maxBackoffMs: 200, forwardLingerMs: 5, drainTimeoutMs: 2000, logger,
    });
    t.teardown(() => store.close());
    const stored: ChainedRecord[] = [];
    let n = 0;
    for (let i = 0; i < 20; i++) stored.push(await store.append(aRecord({ n: ++n })));
    await store.drained(10_000);

    // Fill the tablespace: incompressible rows into a table that lives there, until PostgreSQL says 53100.
    await schema.pool.query(`CREATE TABLE filler (b bytea) TABLESPACE ${tablespace}`);
    await schema.pool.query('ALTER TABLE filler ALTER COLUMN b SET STORAGE EXTERNAL');
    let fillError: { code?: string; message: string } | undefined;
    for (let i = 0; i < 200 && !fillError; i++) {
      await schema.pool.query('INSERT INTO filler (b) VALUES ($1)', [randomBytes(64 * 1024)]).catch((err: { code?: string; message: string }) => (fillError = err));
    }
    for (const size of [8192, 1024, 100]) {
      for (let i = 0; i < 2000; i++) {
        if (await schema.pool.query('INSERT INTO filler (b) VALUES ($1)', [randomBytes(size)]).then(() => false, () => true)) break;
      }
    }
    t.match(fillError, { code: '53100', message: /No space left on device/ }, 'the server itself answers 53100 disk_full');

    for (let i = 0; i < 200; i++) stored.push(await store.append(aRecord({ n: ++n })));
    t.ok(await until(() => !store.pgConnected()), 'the forwarder hits the full disk');
    for (let i = 0; i < 100; i++) stored.push(await store.append(aRecord({ n: ++n })));
    t.equal(store.writable(), true, 'the replica stays ready: the spool takes the decisions');
    t.ok(store.backlog() > 0, `${store.backlog()} decisions wait in the spool`);
    await new Promise((r) => setTimeout(r, 500)); // several retries, each failing with 53100
    const full = logger.lines.filter((l) => /^PostgreSQL is full \(SQLSTATE 53100 disk_full\)/.test(l.msg));
    t.equal(full.length, 1, '"PostgreSQL is full" logged once, not per retry');
    t.match(full[0], { level: 'error', obj: { err: { sqlState: '53100' }, backlog: Number } });

    await schema.pool.query('DROP TABLE filler');
    await store.drained(20_000);
    const restored = logger.lines.filter((l) => /^PostgreSQL takes writes again/.test(l.msg));
    t.equal(restored.length, 1, 'the recovery is logged once');
    t.match(restored[0], { level: 'info', obj: { wasFull: true, backlog: Number, downMs: Number } });
    t.ok((restored[0]!.obj.backlog as number) > 0, `with the backlog to forward (${String(restored[0]!.obj.backlog)})`);
    const rows = await schema.pool.query<{ id: string; n: string }>('SELECT id, count(*) OVER (PARTITION BY id) AS n FROM decisions ORDER BY seq');
    t.strictSame(rows.rows.map((r) => r.id), stored.map((r) => r.id), 'PostgreSQL holds every appended decision, in chain order');
    t.ok(rows.rows.every((r) => r.n === '1'), 'each once');
    t.match(await verifyStore(store, jwks), { ok: true, records: stored.length }, 'the chain verifies');
  });
});

/** Why a tablespace on a tmpfs cannot be made here (undefined: it can); a tmpfs can be mounted. */
async function tablespaceUnavailable(): Promise<string | undefined> {
  const host = new URL(PG_URL!).hostname;
  if (!['127.0.0.1', 'localhost', '::1', '[::1]'].includes(host)) return `the PostgreSQL server on this machine (TZW_TEST_PG_URL points at ${host})`;
  try {
    execFileSync('id', ['-u', 'postgres'], { stdio: 'ignore' });
  } catch {
    return 'the server\'s OS user "postgres" (to own the tablespace directory)';
  }
  const admin = new pg.Pool({ connectionString: PG_URL, max: 1 });
  admin.on('error', () => undefined);
  const cleanup: Array<() => void> = [];
  try {
    const { rows } = await admin.query<{ rolsuper: boolean }>('SELECT rolsuper FROM pg_roles WHERE rolname = current_user');
    if (!rows[0]?.rolsuper) return 'a superuser in TZW_TEST_PG_URL (CREATE TABLESPACE)';
    // Try it: the server must see the directory this process mounts (not so with a private /tmp).
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    const probe = mountSmallFs({ teardown: (fn) => void cleanup.push(() => void fn()) }, 1024 * 1024, { uid, gid });
    if (!probe.ok) return `a tmpfs (${probe.why})`;
    const name = `tzw_probe_${randomBytes(4).toString('hex')}`;
    try {
      await admin.query(`CREATE TABLESPACE ${name} LOCATION '${probe.fs.dir}'`);
      await admin.query(`DROP TABLESPACE ${name}`);
    } catch (err) {
      return `a tablespace on a tmpfs this process mounts (CREATE TABLESPACE failed: ${(err as Error).message})`;
    }
    return undefined;
  } finally {
    for (const fn of cleanup) fn();
    await admin.end();
  }
}
