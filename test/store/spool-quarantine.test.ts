/**
 * Nothing admitted is deleted: spooled decisions PostgreSQL refuses (their id holds a different
 * decision there, or PostgreSQL finds them invalid) are quarantined — kept in the spool with the
 * reason, logged, counted, copied to PostgreSQL — and `tzw decisions export` carries them into the
 * bundle, where `verify` lists them outside the chain. Real PostgreSQL (TZW_TEST_PG_URL) behind a
 * TCP proxy, real spool files.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import Database from 'better-sqlite3';
import { run } from '../../webhook/cli/run.js';
import type { CliIo } from '../../webhook/cli/io.js';
import { verifyStore } from '../../webhook/store/evidence/bundle.js';
import { createSpooledPostgresStore, type SpooledPostgresStore } from '../../webhook/store/postgres/open.js';
import { createPostgresStore } from '../../webhook/store/postgres/store.js';
import { loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';
import type { StoreLogger } from '../../webhook/store/sqlite/store.js';
import { aRecord, idOf, WRITER } from './builders.js';
import { createTcpProxy, createTestSchema, pgSkip, withSchema, PG_URL, type TcpProxy, type TestSchema } from './pg-support.js';

const keyDir = mkdtempSync(join(tmpdir(), 'tzw-quarantine-key-'));
t.teardown(() => rmSync(keyDir, { recursive: true, force: true }));
const signer = await loadOrCreateSigningKey(join(keyDir, 'key.pem'), { create: true });
const jwksPath = join(keyDir, 'jwks.json');
writeFileSync(jwksPath, JSON.stringify(toJwks(signer.publicJwk)));

type Logged = { level: string; msg: string; obj: Record<string, unknown> };
function captureLogger(): StoreLogger & { lines: Logged[] } {
  const lines: Logged[] = [];
  const at = (level: string) => (obj: object, msg: string) => void lines.push({ level, msg, obj: obj as Record<string, unknown> });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

interface Setup {
  schema: TestSchema;
  proxy: TcpProxy;
  dir: string;
  url: string;
  spoolPath: string;
  open(logger?: StoreLogger): Promise<SpooledPostgresStore>;
}

async function setup(t: Test): Promise<Setup> {
  const schema = await createTestSchema();
  const proxy = await createTcpProxy({ up: false });
  const dir = mkdtempSync(join(tmpdir(), 'tzw-quarantine-'));
  t.teardown(async () => {
    await proxy.close();
    await schema.drop();
    rmSync(dir, { recursive: true, force: true });
  });
  const url = withSchema(PG_URL!, schema.name, proxy.port);
  const spoolPath = join(dir, 'spool.db');
  return {
    schema, proxy, dir, url, spoolPath,
    open: (logger) => createSpooledPostgresStore({
      postgres: { url, replica: WRITER, signer, connectTimeoutMs: 1000, recoveryProbeMs: 50 },
      spool: { path: spoolPath, maxBytes: 16 * 1024 * 1024, probeMs: 20 },
      startWaitMs: 300, minBackoffMs: 20, maxBackoffMs: 200, drainTimeoutMs: 2000,
      ...(logger ? { logger } : {}),
    }),
  };
}

async function rowsOf(schema: TestSchema, writer = WRITER): Promise<Array<{ id: string; seq: number }>> {
  const res = await schema.pool.query<{ id: string; seq: string }>('SELECT id, seq FROM decisions WHERE writer = $1 ORDER BY seq', [writer]);
  return res.rows.map((r) => ({ id: r.id, seq: Number(r.seq) }));
}

async function tzw(cwd: string, ...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { stdout: (s) => out.push(s), stderr: (s) => err.push(s), env: {}, cwd, hostname: 'test-host', readFile: (p) => readFileSync(p, 'utf8'), onSignal: () => undefined };
  const code = await run(argv, io);
  return { code, stdout: out.join(''), stderr: err.join('') };
}

t.test('quarantine', { skip: pgSkip }, async (t) => {
  t.test('a spooled decision whose id PostgreSQL holds as another decision is quarantined, kept across restarts and exported', async (t) => {
    const s = await setup(t);
    // Another writer already stored a different decision under idOf(2).
    s.proxy.up();
    const other = await createPostgresStore({ url: s.url, replica: 'tzw-other', signer });
    await other.append(aRecord({ n: 2, replica: 'tzw-other', namespace: 'elsewhere' }));
    await other.close();
    s.proxy.down();

    const logger = captureLogger();
    let store = await s.open(logger);
    const spooled = await Promise.all([1, 2, 3].map((n) => store.append(aRecord({ n }))));
    s.proxy.up();
    await store.drained(10_000);

    t.strictSame(await rowsOf(s.schema), [{ id: idOf(1), seq: 1 }, { id: idOf(3), seq: 2 }], 'the others are forwarded, re-chained around the refused one');
    t.equal(store.backlog(), 0);
    t.equal(store.quarantinedCount(), 1);
    const [q] = await store.quarantined();
    t.strictSame(q?.record, spooled[1], 'kept exactly as admitted: original seq, prevHash and hash');
    t.match(q?.reason, /^duplicate id: PostgreSQL holds a different decision with id .* \(writer tzw-other, seq 1/);
    t.match(logger.lines.filter((l) => l.level === 'error'), [{ msg: /quarantined in the spool/, obj: { id: idOf(2), writer: WRITER, seq: 2, reason: /duplicate id/ } }]);
    const copies = await s.schema.pool.query<{ id: string; reason: string }>('SELECT id, reason FROM quarantined_decisions');
    t.strictSame(copies.rows.map((r) => r.id), [idOf(2)], 'PostgreSQL holds a copy for exports');
    t.match(await verifyStore(store, jwks()), { ok: true, records: 3, writers: 2 }, 'every chain still verifies');

    await store.close();
    store = await s.open();
    t.teardown(() => store.close());
    t.equal(store.quarantinedCount(), 1, 'the quarantine survives a restart');
    t.equal(store.backlog(), 0, 'and is not forwarded again');
    const db = new Database(s.spoolPath, { readonly: true });
    t.strictSame(db.prepare('SELECT id, seq, hash FROM quarantine').all(), [{ id: idOf(2), seq: 2, hash: spooled[1]!.hash }], 'in the spool file');
    db.close();

    const exp = await tzw(s.dir, 'decisions', 'export', '--store', s.url, '--out', 'evidence.jsonl', '--jwks', jwksPath);
    t.equal(exp.code, 0, exp.stderr);
    t.match(exp.stderr, /also holds 1 quarantined record/);
    const lines = readFileSync(join(s.dir, 'evidence.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string; quarantined?: { record: unknown; reason: string } });
    t.strictSame(lines.filter((l) => l.type === 'quarantined').map((l) => l.quarantined?.record), [spooled[1]]);
    const ver = await tzw(s.dir, 'decisions', 'verify', '--bundle', 'evidence.jsonl', '--jwks', jwksPath);
    t.equal(ver.code, 0, ver.stdout);
    t.match(ver.stdout, new RegExp(`warning: quarantined record ${idOf(2)} \\(writer ${WRITER}, seq 2\\), outside every chain and not covered by a checkpoint; its hash matches its content; quarantined .*: duplicate id`));
  });

  t.test('a spooled decision PostgreSQL refuses as invalid (changed on disk) is quarantined, not dropped', async (t) => {
    const s = await setup(t);
    const logger = captureLogger();
    let store = await s.open(logger);
    await Promise.all([1, 2, 3].map((n) => store.append(aRecord({ n }))));
    await store.close();
    // The spool file was damaged or edited: record 2 no longer matches its hash.
    const db = new Database(s.spoolPath);
    t.equal(db.prepare(`UPDATE pending SET body = replace(body, '"verdict":"patched"', '"verdict":"allowed"') WHERE id = ?`).run(idOf(2)).changes, 1);
    db.close();
    s.proxy.up();
    store = await s.open(logger);
    t.teardown(() => store.close());
    await store.drained(10_000);
    t.strictSame(await rowsOf(s.schema), [{ id: idOf(1), seq: 1 }, { id: idOf(3), seq: 2 }]);
    t.equal(store.quarantinedCount(), 1);
    const [q] = await store.quarantined();
    t.equal(q?.record.id, idOf(2));
    t.equal(q?.record.verdict, 'allowed', 'kept as found');
    t.match(q?.reason, /^refused by PostgreSQL: .*its hash does not match its content/);
    const exp = await tzw(s.dir, 'decisions', 'export', '--store', s.url, '--out', 'evidence.jsonl', '--jwks', jwksPath);
    t.equal(exp.code, 0, exp.stderr);
    const ver = await tzw(s.dir, 'decisions', 'verify', '--bundle', 'evidence.jsonl', '--jwks', jwksPath);
    t.equal(ver.code, 0, 'the chain is intact; the quarantined record is explained, not hidden');
    t.match(ver.stdout, new RegExp(`warning: quarantined record ${idOf(2)} .*its hash does NOT match its content; .*refused by PostgreSQL`));
  });
});

function jwks() {
  return toJwks(signer.publicJwk);
}
