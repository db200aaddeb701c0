/**
 * Namespace evidence from real stores: SQLite (one writer) through the CLI, and two writers
 * (replicas) on one PostgreSQL database. The bundle covers every writer's chain of the namespace;
 * a record missing from either writer — deleted in the database or left out of the bundle — fails.
 */
import t, { type Test } from 'tap';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { run } from '../../webhook/cli/run.js';
import { buildAuditApp } from '../../webhook/http/audit.js';
import type { CliIo } from '../../webhook/cli/io.js';
import type { DecisionRecord } from '../../webhook/core/record.js';
import { toNamespaceBundleLines, verifyNamespaceBundleFile, verifyNamespaceBundleLines, writeNamespaceBundle, type NamespaceRange, type NsRecord } from '../../webhook/store/evidence/namespace-bundle.js';
import { toNamespaceEvidenceSource } from '../../webhook/store/namespace-source.js';
import { openStoreForRead } from '../../webhook/store/open-url.js';
import type { DecisionStore } from '../../webhook/store/port.js';
import { createPostgresStore } from '../../webhook/store/postgres/store.js';
import { createSqliteStore } from '../../webhook/store/sqlite/store.js';
import { timeAt } from './builders.js';
import { aNamespaceRecord, collect } from './ns-builders.js';
import { createTestSchema, pgSkip } from './pg-support.js';
import { createTestSigner } from './setup.js';

const A = 'zq-team-a';
const B = 'zq-team-b';
const CREATED = '2026-02-01T00:00:00.000Z';

/**
 * The stores' clock, set by the test: records here carry the builder's times (T0 + ms), so the
 * checkpoints must be signed on the same time line, after the records they cover (as in production,
 * where both come from the writer's clock).
 */
let nowMs = 0;
const clock = () => new Date(Date.parse(timeAt(nowMs)));

async function tzw(cwd: string, ...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { stdout: (s) => out.push(s), stderr: (s) => err.push(s), env: {}, cwd, hostname: 'test-host', readFile: (p) => readFileSync(p, 'utf8'), onSignal: () => undefined };
  const code = await run(argv, io);
  return { code, stdout: out.join(''), stderr: err.join('') };
}

/** Appends `count` records alternating A, B (and a few of A in a row), one second apart from `startMs`, on `store`. */
async function appendMany(store: DecisionStore, writer: string, startMs: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const r: DecisionRecord = aNamespaceRecord(i % 3 === 2 ? B : A, writer, startMs + i * 1000);
    await store.append(r);
  }
}

t.test('SQLite: export --namespace → verify --bundle: complete; a row deleted from the database fails', async (t) => {
  const dir = t.testdir({});
  const { signer, jwks } = await createTestSigner(t, 'tzw-nss-');
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));
  const path = join(dir, 'decisions.db');
  const store = await createSqliteStore({ path, replica: 'tzw-0', signer, clock, checkpointEvery: { records: 1_000_000, seconds: 3600 } });
  t.teardown(() => store.close());
  await appendMany(store, 'tzw-0', 1000, 12);
  nowMs = 13_500;
  await store.checkpointNow();
  await appendMany(store, 'tzw-0', 20_000, 12);
  nowMs = 32_500;
  await store.checkpointNow();
  await appendMany(store, 'tzw-0', 40_000, 3); // not yet covered
  const url = `sqlite:${path}`;
  // The first namespace checkpoint is at 13.5 s: a range from 15 s is proven from its start.
  const since = timeAt(15_000);
  const until = timeAt(30_000);

  const exp = await tzw(dir, 'decisions', 'export', '--store', url, '--namespace', A, '--since', since, '--until', until, '--jwks', 'jwks.json', '--out', 'a.jsonl');
  t.equal(exp.code, 0, exp.stderr);
  t.match(exp.stdout, /^Wrote \d+ records of namespace zq-team-a and \d+ checkpoints of 1 writer\(s\) to .*a\.jsonl/);
  const text = readFileSync(join(dir, 'a.jsonl'), 'utf8');
  t.notOk(text.includes(B), 'no other namespace named in the bundle');
  const ok = await tzw(dir, 'decisions', 'verify', '--bundle', 'a.jsonl', '--jwks', 'jwks.json');
  t.equal(ok.code, 0, ok.stdout);
  t.match(ok.stdout, new RegExp(`^complete for namespace ${A} from ${since} to ${until} \\(checkpoint size 24, writer tzw-0\\)$`, 'm'));
  // A at 20, 21, 23, 24, 26, 27, 29, 30 s: 8 after the lower checkpoint, 7 before `until`.
  t.match(ok.stdout, /^  7 record\(s\) in the range; 8 record\(s\) of zq-team-a in the bundle up to that checkpoint/m);
  t.match(ok.stdout, /2 record\(s\) after checkpoint size 24: not yet covered by a signed checkpoint \(0 in the range\)/);
  // A range starting before the first namespace checkpoint is proven from that checkpoint on, and says so.
  const early = await tzw(dir, 'decisions', 'export', '--store', url, '--namespace', A, '--since', timeAt(5000), '--jwks', 'jwks.json', '--out', 'early.jsonl');
  t.equal(early.code, 0, early.stderr);
  const earlyOk = await tzw(dir, 'decisions', 'verify', '--bundle', 'early.jsonl', '--jwks', 'jwks.json');
  t.equal(earlyOk.code, 0, earlyOk.stdout);
  t.match(earlyOk.stdout, new RegExp(`^complete for namespace ${A} from ${timeAt(13_500)} to ${timeAt(32_500)} \\(checkpoint size 24, writer tzw-0\\)\n.*\n  records before ${timeAt(13_500)} \\(this writer's first namespace checkpoint\\) predate the namespace chains and are not covered`));

  // The audit API's export (what the console's Export downloads) gives the same bundle.
  const app = await buildAuditApp({ store, jwks: () => jwks, auth: { mode: 'none', groupsClaim: 'groups' }, logger: pino({ level: 'silent' }) });
  t.teardown(() => app.close());
  const res = await app.inject({ url: `/api/v1/export?namespace=${A}&since=${since}&until=${until}` });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-disposition'], new RegExp(`filename="tzw-namespace-${A}-\\d{8}T\\d{6}Z\\.jsonl"`));
  const viaApi = res.body.trimEnd().split('\n');
  t.strictSame(viaApi.slice(1), text.trimEnd().split('\n').slice(1), 'the same lines as the CLI export after the header');
  t.match(await verifyNamespaceBundleLines(viaApi, jwks), { ok: true, writers: [{ status: 'complete', from: since, to: until, size: 24 }] });

  // A record of A in the range deleted in the database: the next export cannot hide it.
  const db = (await import('better-sqlite3')).default(path);
  const victim = (JSON.parse(text.split('\n').find((l) => l.includes(`"time":"${timeAt(21_000)}"`))!) as { record: NsRecord }).record;
  db.prepare('DELETE FROM decisions WHERE id = ?').run(victim.id);
  db.close();
  const again = await tzw(dir, 'decisions', 'export', '--store', url, '--namespace', A, '--since', since, '--until', until, '--jwks', 'jwks.json', '--out', 'b.jsonl');
  t.equal(again.code, 0, again.stderr);
  const bad = await tzw(dir, 'decisions', 'verify', '--bundle', 'b.jsonl', '--jwks', 'jwks.json');
  t.equal(bad.code, 3, bad.stdout);
  t.match(bad.stdout, new RegExp(`VERIFICATION FAILED.*\\nwriter tzw-0, nsSeq ${victim.nsSeq! + 1}.*removed or reordered`));
});

t.test('PostgreSQL: two replicas, one bundle covering both writers; a record missing from either fails', { skip: pgSkip }, async (t: Test) => {
  const { signer, jwks } = await createTestSigner(t, 'tzw-nss-');
  const schema = await createTestSchema();
  const opts = { url: schema.url, signer, clock, checkpointEvery: { records: 1_000_000, seconds: 3600 }, recoveryProbeMs: 20 };
  const r0 = await createPostgresStore({ ...opts, replica: 'tzw-0' });
  const r1 = await createPostgresStore({ ...opts, replica: 'tzw-1' });
  t.teardown(async () => {
    await r0.close();
    await r1.close();
    await schema.drop();
  });
  // Interleaved writes on both replicas, checkpoints on each.
  for (let round = 0; round < 3; round++) {
    await Promise.all([appendMany(r0, 'tzw-0', round * 20_000, 9), appendMany(r1, 'tzw-1', round * 20_000 + 500, 9)]);
    nowMs = round * 20_000 + 10_000;
    await r0.checkpointNow();
    await r1.checkpointNow();
  }
  const reader = await openStoreForRead(schema.url, { cwd: process.cwd() });
  t.teardown(() => reader.close());
  const range: NamespaceRange = { namespace: A, since: timeAt(15_000), until: timeAt(45_000) };
  const lines = await collect(toNamespaceBundleLines(toNamespaceEvidenceSource(reader), range, jwks, CREATED));
  const result = await verifyNamespaceBundleLines(lines, jwks);
  t.match(result, {
    ok: true,
    writers: [
      { writer: 'tzw-0', status: 'complete', from: range.since, to: range.until, size: 27 },
      { writer: 'tzw-1', status: 'complete', from: range.since, to: range.until, size: 27 },
    ],
  });
  t.notOk(lines.join('\n').includes(B), 'no other namespace named');
  const recs = lines.map((l, i) => [l, i] as const).filter(([l]) => l.startsWith('{"type":"record"'));
  const middleOf = (writer: string) => {
    const mine = recs.filter(([l]) => (JSON.parse(l) as { record: NsRecord }).record.replica === writer);
    const [line, at] = mine[Math.floor(mine.length / 2)]!;
    return { at, victim: (JSON.parse(line) as { record: NsRecord }).record };
  };
  for (const writer of ['tzw-0', 'tzw-1']) {
    const cut = await verifyNamespaceBundleLines(lines.filter((_, i) => i !== middleOf(writer).at), jwks);
    t.match(cut, { ok: false, firstBad: { writer, problem: /removed|missing/ } }, `a record of ${writer} left out of the bundle`);
  }
  // The same through the CLI (tzw decisions export --namespace / verify --bundle) and the audit API.
  const dir = t.testdir({});
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));
  const cliExport = (out: string) => tzw(dir, 'decisions', 'export', '--store', schema.url, '--namespace', A, '--since', range.since!, '--until', range.until!, '--jwks', 'jwks.json', '--out', out);
  const exp = await cliExport('pg.jsonl');
  t.equal(exp.code, 0, exp.stderr);
  t.match(exp.stdout, /^Wrote \d+ records of namespace zq-team-a and \d+ checkpoints of 2 writer\(s\)/);
  const ok = await tzw(dir, 'decisions', 'verify', '--bundle', 'pg.jsonl', '--jwks', 'jwks.json');
  t.equal(ok.code, 0, ok.stdout);
  for (const writer of ['tzw-0', 'tzw-1']) t.match(ok.stdout, new RegExp(`^complete for namespace ${A} from ${range.since} to ${range.until} \\(checkpoint size 27, writer ${writer}\\)$`, 'm'));
  const app = await buildAuditApp({ store: r0, jwks: () => jwks, auth: { mode: 'none', groupsClaim: 'groups' }, logger: pino({ level: 'silent' }) });
  t.teardown(() => app.close());
  const res = await app.inject({ url: `/api/v1/export?namespace=${A}&since=${range.since}&until=${range.until}` });
  t.equal(res.statusCode, 200);
  t.match(await verifyNamespaceBundleLines(res.body.trimEnd().split('\n'), jwks), { ok: true, writers: [{ writer: 'tzw-0', status: 'complete' }, { writer: 'tzw-1', status: 'complete' }] }, 'the API export of a replica covers both writers');

  // Deleted in the database, then exported: tzw-1 first (tzw-0 still verifies, so the failure is
  // tzw-1's), then tzw-0 as well (writers are checked in order, so the failure is tzw-0's).
  for (const writer of ['tzw-1', 'tzw-0']) {
    await schema.pool.query('DELETE FROM decisions WHERE id = $1', [middleOf(writer).victim.id]);
    const after = await collect(toNamespaceBundleLines(toNamespaceEvidenceSource(reader), range, jwks, CREATED));
    t.match(await verifyNamespaceBundleLines(after, jwks), { ok: false, firstBad: { writer, problem: /removed|missing/ } }, `a record of ${writer} deleted in PostgreSQL`);
    t.equal((await cliExport(`pg-${writer}.jsonl`)).code, 0);
    const bad = await tzw(dir, 'decisions', 'verify', '--bundle', `pg-${writer}.jsonl`, '--jwks', 'jwks.json');
    t.equal(bad.code, 3, `verify --bundle exits 3: ${bad.stdout}`);
    t.match(bad.stdout, new RegExp(`VERIFICATION FAILED[^]*writer ${writer}, nsSeq \\d+`));
  }
});

t.test('SQLite: progress of a namespace export and of its verification; a throwing callback (Ctrl-C) leaves no file', async (t) => {
  const dir = t.testdir({});
  const { signer, jwks } = await createTestSigner(t, 'tzw-nsp-');
  const path = join(dir, 'decisions.db');
  const store = await createSqliteStore({ path, replica: 'tzw-0', signer, clock, checkpointEvery: { records: 1_000_000, seconds: 3600 } });
  t.teardown(() => store.close());
  await appendMany(store, 'tzw-0', 1000, 30); // 20 of A, 10 of B
  nowMs = 31_500;
  await store.checkpointNow();
  await appendMany(store, 'tzw-0', 40_000, 6); // 4 more of A, not yet covered
  const events: Array<{ phase: string; done: number; total?: number; unit?: string }> = [];
  const out = join(dir, 'a.jsonl');
  const summary = await writeNamespaceBundle(toNamespaceEvidenceSource(store), { namespace: A }, out, jwks, { onProgress: (e) => void events.push(e) });
  t.equal(summary.records, 24);
  t.strictSame(events.filter((e) => e.phase === 'checkpoints'), [
    { phase: 'checkpoints', done: 0, total: 1, unit: 'writers' },
    { phase: 'checkpoints', done: 1, total: 1, unit: 'writers' },
  ], 'one writer planned');
  const records = events.filter((e) => e.phase === 'records');
  t.strictSame(records.map((e) => e.done), Array.from({ length: 25 }, (_, i) => i), 'every record reported, in order');
  t.ok(records.every((e) => e.total === 24), "the total is the namespace's head nsSeq on the writer (ns_heads)");

  // The same bundle through a store without the v2 port methods: its scans report too.
  const bare = { ...Object.fromEntries(['checkpoints', 'stream', 'streamChain', 'count', 'get', 'query', 'anchors'].map((k) => [k, (store as unknown as Record<string, (...a: unknown[]) => unknown>)[k]!.bind(store)])) } as unknown as Parameters<typeof toNamespaceEvidenceSource>[0];
  const scans: string[] = [];
  const viaScan = await collect(toNamespaceBundleLines(toNamespaceEvidenceSource(bare, { onProgress: (e) => void scans.push(e.phase) }), { namespace: A }, jwks, CREATED));
  t.strictSame(viaScan.slice(1), readFileSync(out, 'utf8').trimEnd().split('\n').slice(1), 'the same lines without the port methods');
  t.ok(scans.includes('scanning namespace'), 'the namespace scan reports its progress');

  // Verification: bytes of the file, checkpoints then records, ending at the file's size.
  const seen: Array<{ phase: string; done: number; total?: number; unit?: string }> = [];
  const result = await verifyNamespaceBundleFile(out, jwks, { onProgress: (e) => void seen.push(e) });
  t.match(result, { ok: true });
  const size = statSync(out).size;
  t.ok(seen.every((e) => e.unit === 'bytes' && e.total === size), 'in bytes of the file');
  t.strictSame([...new Set(seen.map((e) => e.phase))], ['checkpoints', 'records']);
  t.equal(seen.at(-1)!.done, size, 'ends at the whole file');

  // A callback that throws part way (what Ctrl-C does): the error comes out, no file, no .tmp.
  const stopped = join(dir, 'stopped.jsonl');
  await t.rejects(
    writeNamespaceBundle(toNamespaceEvidenceSource(store), { namespace: A }, stopped, jwks, {
      onProgress: (e) => {
        if (e.phase === 'records' && e.done === 10) throw Object.assign(new Error('interrupted'), { code: 'ERR_INTERRUPTED' });
      },
    }),
    { code: 'ERR_INTERRUPTED' },
  );
  t.notOk(existsSync(stopped), 'nothing under the final name');
  t.notOk(existsSync(`${stopped}.tmp`), 'no temporary file');
  await t.rejects(
    verifyNamespaceBundleFile(out, jwks, {
      onProgress: (e) => {
        if (e.phase === 'records') throw Object.assign(new Error('interrupted'), { code: 'ERR_INTERRUPTED' });
      },
    }),
    { code: 'ERR_INTERRUPTED' },
    'verification stops too (the verifier does not turn it into a verdict)',
  );
});
