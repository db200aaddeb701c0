/**
 * The spooled PostgreSQL store against a real PostgreSQL reached through a TCP proxy the test cuts
 * and restores: admissions go on while the database is down, and afterwards every decision is in
 * PostgreSQL exactly once, in order, in chains that verify.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { ChainedRecord } from '../../webhook/core/record.js';
import { verifyStore } from '../../webhook/store/evidence/bundle.js';
import { createSpooledPostgresStore, openPostgresStore, type SpooledPostgresOptions, type SpooledPostgresStore } from '../../webhook/store/postgres/open.js';
import { createPostgresStore } from '../../webhook/store/postgres/store.js';
import { loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';
import { createSpool } from '../../webhook/store/postgres/spool.js';
import type { StoreLogger } from '../../webhook/store/sqlite/store.js';
import { defaultConfig } from '../../webhook/config/schema.js';
import { aRecord, chainOfV2, idOf, WRITER } from './builders.js';
import { createTcpProxy, createTestSchema, pgSkip, withSchema, PG_URL, type TcpProxy, type TestSchema } from './pg-support.js';

const keyDir = mkdtempSync(join(tmpdir(), 'tzw-spool-key-'));
t.teardown(() => rmSync(keyDir, { recursive: true, force: true }));
const signer = await loadOrCreateSigningKey(join(keyDir, 'key.pem'), { create: true });
const jwks = toJwks(signer.publicJwk);

interface Logged {
  level: 'info' | 'warn' | 'error';
  msg: string;
  obj: object;
}

function captureLogger(): StoreLogger & { lines: Logged[] } {
  const lines: Logged[] = [];
  return {
    lines,
    info: (obj, msg) => lines.push({ level: 'info', msg, obj }),
    warn: (obj, msg) => lines.push({ level: 'warn', msg, obj }),
    error: (obj, msg) => lines.push({ level: 'error', msg, obj }),
  };
}

interface Setup {
  schema: TestSchema;
  proxy: TcpProxy;
  dir: string;
  /** Store URL through the proxy. */
  url: string;
  open(extra?: Partial<SpooledPostgresOptions>, replica?: string): Promise<SpooledPostgresStore>;
}

async function setup(t: Test, proxyUp: boolean): Promise<Setup> {
  const schema = await createTestSchema();
  const proxy = await createTcpProxy({ up: proxyUp });
  const dir = mkdtempSync(join(tmpdir(), 'tzw-spool-'));
  t.teardown(async () => {
    await proxy.close();
    await schema.drop();
    rmSync(dir, { recursive: true, force: true });
  });
  const url = withSchema(PG_URL!, schema.name, proxy.port);
  return {
    schema,
    proxy,
    dir,
    url,
    open: (extra = {}, replica = WRITER) =>
      createSpooledPostgresStore({
        postgres: { url, replica, signer, connectTimeoutMs: 1000, recoveryProbeMs: 50 },
        spool: { path: join(dir, `${replica}.spool.db`), maxBytes: 16 * 1024 * 1024, probeMs: 20 },
        // Long enough for a first connection and schema migration on a loaded machine (measured
        // 0.25-2 s at load 5-17; cases that start with PostgreSQL down are refused at once by the
        // proxy, so start() returns without waiting it out).
        startWaitMs: 10_000,
        minBackoffMs: 20,
        maxBackoffMs: 200,
        drainTimeoutMs: 2000,
        ...extra,
      }),
  };
}

/** Every row of a writer in PostgreSQL, by seq. */
async function rowsOf(schema: TestSchema, writer = WRITER): Promise<Array<{ id: string; seq: number }>> {
  const res = await schema.pool.query<{ id: string; seq: string }>('SELECT id, seq FROM decisions WHERE writer = $1 ORDER BY seq', [writer]);
  return res.rows.map((r) => ({ id: r.id, seq: Number(r.seq) }));
}

t.test('spooled PostgreSQL store', { skip: pgSkip }, async (t) => {
  t.test('PostgreSQL down from the start: appends succeed and queue, then everything is forwarded once, in order', async (t) => {
    const s = await setup(t, false);
    const logger = captureLogger();
    const store = await s.open({ logger });
    t.teardown(() => store.close());
    t.equal(store.pgConnected(), false);
    t.equal(store.writable(), true, 'ready: the spool takes decisions while PostgreSQL is down');
    const inputs = Array.from({ length: 300 }, (_, i) => aRecord({ n: i + 1 }));
    const stored = await Promise.all(inputs.map((r) => store.append(r)));
    t.strictSame(stored, chainOfV2(inputs), 'final at spool time (record format v2)');
    t.equal(store.backlog(), 300);
    t.strictSame(await store.get(idOf(42)), stored[41], 'get finds a spooled record');
    await t.rejects(store.query({ limit: 10 }), { code: 'ERR_STORE_UNAVAILABLE', message: /PostgreSQL has not been reachable since start; 300 decision\(s\) wait in the spool/ });
    t.match(logger.lines, [{ level: 'warn', msg: /PostgreSQL is not reachable at start: serving from the local spool/ }]);

    s.proxy.up();
    await store.drained(10_000);
    t.equal(store.backlog(), 0);
    t.equal(store.pgConnected(), true);
    t.strictSame(await rowsOf(s.schema), stored.map((r) => ({ id: r.id, seq: r.seq })), 'each decision exactly once, in chain order');
    t.strictSame((await store.query({ limit: 1000 })).items, stored, 'PostgreSQL holds them exactly as spooled');
    t.match(await verifyStore(store, jwks), { ok: true, records: 300, writers: 1 });
  });

  t.test('an outage in the middle of the load: no append fails, nothing is lost or doubled', async (t) => {
    const s = await setup(t, true);
    const logger = captureLogger();
    const store = await s.open({ logger });
    t.teardown(() => store.close());
    t.equal(store.pgConnected(), true);
    const stored: ChainedRecord[] = [];
    let n = 0;
    const wave = async () => {
      const batch = Array.from({ length: 25 }, () => aRecord({ n: ++n }));
      stored.push(...(await Promise.all(batch.map((r) => store.append(r)))));
      await new Promise((r) => setTimeout(r, 15));
    };
    for (let i = 0; i < 6; i++) await wave();
    s.proxy.down();
    for (let i = 0; i < 8; i++) await wave();
    for (let i = 0; i < 100 && store.pgConnected(); i++) await new Promise((r) => setTimeout(r, 10));
    t.equal(store.pgConnected(), false, 'the forwarder noticed the outage');
    t.ok(store.backlog() > 0, `${store.backlog()} decisions wait in the spool`);
    s.proxy.up();
    for (let i = 0; i < 6; i++) await wave();
    await store.drained(10_000);
    t.equal(stored.length, 500);
    t.strictSame(await rowsOf(s.schema), stored.map((r) => ({ id: r.id, seq: r.seq })).sort((a, b) => a.seq - b.seq), 'each of the 500 decisions exactly once');
    t.match(await verifyStore(store, jwks), { ok: true, records: 500 });
    const msgs = logger.lines.map((l) => l.msg);
    t.ok(msgs.some((m) => /cannot forward to PostgreSQL \(unreachable or refusing writes\): decisions are kept in the local spool/.test(m)), 'the outage is logged');
    t.ok(msgs.some((m) => /PostgreSQL takes writes again: forwarding spooled decisions/.test(m)), 'so is the recovery');
    t.strictSame(logger.lines.filter((l) => l.level === 'error'), [], 'no error: the admission path never failed');
  });

  t.test('a full spool fails admissions closed with a clear message, and recovers once drained', async (t) => {
    const s = await setup(t, false);
    const store = await s.open({ spool: { path: join(s.dir, 'small.db'), maxBytes: 256 * 1024, probeMs: 20 } });
    t.teardown(() => store.close());
    let n = 0;
    let refused: unknown;
    while (!refused && n < 3000) {
      const results = await Promise.allSettled(Array.from({ length: 20 }, () => store.append(aRecord({ n: ++n }))));
      refused = results.find((r) => r.status === 'rejected')?.reason;
    }
    t.match(refused, { code: 'ERR_STORE_UNAVAILABLE', message: new RegExp(`the decision spool ${join(s.dir, 'small.db')} is full \\(\\d+ records waiting for PostgreSQL`) });
    t.equal(store.writable(), false, 'unready: the admission path fails closed');
    const kept = store.backlog();
    s.proxy.up();
    await store.drained(10_000);
    for (let i = 0; i < 100 && !store.writable(); i++) await new Promise((r) => setTimeout(r, 20));
    t.equal(store.writable(), true, 'ready again once forwarded');
    t.equal((await rowsOf(s.schema)).length, kept, 'every accepted decision reached PostgreSQL');
    t.equal((await store.append(aRecord({ n: ++n }))).seq, kept + 1);
  });

  t.test('a restart continues from the spool, and forwards what was left', async (t) => {
    const s = await setup(t, false);
    let store = await s.open({ drainTimeoutMs: 100 });
    const first = await Promise.all(Array.from({ length: 20 }, (_, i) => store.append(aRecord({ n: i + 1 }))));
    await store.close();
    s.proxy.up();
    store = await s.open();
    t.teardown(() => store.close());
    const next = await store.append(aRecord({ n: 21 }));
    t.match(next, { seq: 21, prevHash: first[19]!.hash });
    await store.drained(10_000);
    t.strictSame((await rowsOf(s.schema)).map((r) => r.seq), Array.from({ length: 21 }, (_, i) => i + 1));
    t.match(await verifyStore(store, jwks), { ok: true, records: 21 });
  });

  t.test('a lost spool does not restart the chain: it continues after the PostgreSQL head', async (t) => {
    const s = await setup(t, true);
    const pg = await createPostgresStore({ url: s.url, replica: WRITER, signer });
    for (let n = 1; n <= 5; n++) await pg.append(aRecord({ n }));
    await pg.close();
    // PostgreSQL reachable at start: the fresh spool starts at the database's head.
    const a = await s.open({ spool: { path: join(s.dir, 'fresh-a.db'), maxBytes: 1 << 24 } });
    t.equal((await a.append(aRecord({ n: 6 }))).seq, 6);
    await a.close();
    // PostgreSQL down at start: the fresh spool starts at seq 1; its records are re-chained after
    // the database's head when it answers, instead of colliding with seq 1..6.
    s.proxy.down();
    const logger = captureLogger();
    const b = await s.open({ spool: { path: join(s.dir, 'fresh-b.db'), maxBytes: 1 << 24 }, logger });
    t.teardown(() => b.close());
    const spooled = await Promise.all([7, 8, 9].map((n) => b.append(aRecord({ n }))));
    t.strictSame(spooled.map((r) => r.seq), [1, 2, 3]);
    s.proxy.up();
    await b.drained(10_000);
    t.strictSame(await rowsOf(s.schema), Array.from({ length: 9 }, (_, i) => ({ id: idOf(i + 1), seq: i + 1 })));
    t.match(await verifyStore(b, jwks), { ok: true, records: 9 });
    t.ok(logger.lines.some((l) => /re-chained after the PostgreSQL head/.test(l.msg)));
    t.equal((await b.append(aRecord({ n: 10 }))).seq, 10);
  });

  t.test('records PostgreSQL committed but the spool still holds (lost acknowledgement) are not doubled', async (t) => {
    const s = await setup(t, true);
    const path = join(s.dir, 'crashed.db');
    const spool = createSpool({ path, maxBytes: 1 << 24, replica: WRITER });
    await Promise.all(Array.from({ length: 30 }, (_, i) => spool.append(aRecord({ n: i + 1 }))));
    const pg = await createPostgresStore({ url: s.url, replica: WRITER, signer });
    // As if the process died after PostgreSQL committed the first 20 and before the spool removed them.
    await pg.appendChained(spool.peek(20).map((e) => e.record));
    await pg.close();
    spool.close();
    const store = await s.open({ spool: { path, maxBytes: 1 << 24 } });
    t.teardown(() => store.close());
    await store.drained(10_000);
    t.strictSame((await rowsOf(s.schema)).map((r) => r.seq), Array.from({ length: 30 }, (_, i) => i + 1), 'each once');
    t.match(await verifyStore(store, jwks), { ok: true, records: 30 });
  });

  t.test('two replicas, one database: each forwards its own chain', async (t) => {
    const s = await setup(t, false);
    const [a, b] = await Promise.all([s.open({}, 'tzw-a'), s.open({}, 'tzw-b')]);
    t.teardown(() => Promise.all([a.close(), b.close()]));
    await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? b : a).append(aRecord({ n: i + 1, replica: i % 2 ? 'tzw-b' : 'tzw-a' }))));
    s.proxy.up();
    await Promise.all([a.drained(10_000), b.drained(10_000)]);
    t.equal((await rowsOf(s.schema, 'tzw-a')).length, 50);
    t.equal((await rowsOf(s.schema, 'tzw-b')).length, 50);
    t.match(await verifyStore(a, jwks), { ok: true, records: 100, writers: 2 });
  });

  t.test('openPostgresStore: the server entry, from config', async (t) => {
    const s = await setup(t, true);
    const config = defaultConfig('tzw-cfg');
    config.store.url = s.url;
    config.store.spool = { path: join(s.dir, 'nested', 'dir', 'spool.db'), maxBytes: 1 << 24 };
    const { store, backlog } = await openPostgresStore(config, signer, captureLogger());
    t.teardown(() => store.close());
    const r = await store.append(aRecord({ n: 1, replica: 'tzw-cfg' }));
    t.equal(r.seq, 1);
    await (store as SpooledPostgresStore).drained(10_000);
    t.equal(backlog(), 0);
    t.strictSame(await store.get(r.id), r);
    config.store.url = 'postgres://x:y@127.0.0.1:1/db?schema=not-an-identifier!';
    await t.rejects(openPostgresStore(config, signer, captureLogger()), { code: 'ERR_STORE_CONFIG', message: /plain identifier/ });
    const wrongPassword = new URL(s.url);
    wrongPassword.password = 'nope';
    config.store.url = wrongPassword.toString();
    await t.rejects(openPostgresStore(config, signer, captureLogger()), { code: 'ERR_STORE_OPEN', message: /password authentication failed/ }, 'a database that refuses us fails the start');
  });
});
