/**
 * The local spool on its own (no PostgreSQL): durable chained appends, the head kept across
 * restarts and removals, the size limit that fails admissions closed, head moves and re-chaining.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import Database from 'better-sqlite3';
import type { ChainedRecord } from '../../webhook/core/record.js';
import { GENESIS_HASH, hashRecord } from '../../webhook/store/evidence/chain.js';
import { createSpool, type Spool, type SpoolOptions } from '../../webhook/store/postgres/spool.js';
import { aRecord, chainOf, chainOfV2, idOf, WRITER } from './builders.js';

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-spool-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function open(t: Test, path: string, extra: Partial<SpoolOptions> = {}): Spool {
  const spool = createSpool({ path, maxBytes: 64 * 1024 * 1024, replica: WRITER, probeMs: 20, busyTimeoutMs: 50, ...extra });
  t.teardown(() => spool.close());
  return spool;
}

/** The records a store would have built for the same appends (pure reference). */
function linked(records: ChainedRecord[], start = { seq: 0, hash: GENESIS_HASH }): boolean {
  let prev = start;
  for (const r of records) {
    const { hash, ...rest } = r;
    if (r.seq !== prev.seq + 1 || r.prevHash !== prev.hash || hashRecord(r.prevHash, rest) !== hash) return false;
    prev = { seq: r.seq, hash };
  }
  return true;
}

t.test('appends are chained, durable and final; the head survives removal and restart', async (t) => {
  const path = join(tmp(t), 'spool.db');
  let spool = open(t, path);
  const db = new Database(path, { readonly: true });
  t.teardown(() => db.close());
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  const inputs = Array.from({ length: 50 }, (_, i) => aRecord({ n: i + 1 }));
  const stored = await Promise.all(inputs.map((r) => spool.append(r)));
  t.strictSame(stored, chainOfV2(inputs), 'chained at spool time exactly as the stores chain (record format v2)');
  t.equal(spool.backlog(), 50);
  t.strictSame(spool.head(), { seq: 50, hash: stored[49]!.hash });
  const peeked = spool.peek(20);
  t.strictSame(peeked.map((e) => e.record), stored.slice(0, 20), 'oldest first');
  t.strictSame(spool.get(idOf(7)), stored[6]);
  t.equal(spool.removeThrough(peeked[19]!.pos), 20);
  t.equal(spool.backlog(), 30);
  t.equal(spool.get(idOf(7)), undefined);
  t.strictSame(spool.peek(1).map((e) => e.record.seq), [21]);
  await spool.close();

  spool = open(t, path);
  t.equal(spool.backlog(), 30, 'what was not removed is still there after a restart');
  t.strictSame(spool.peek(1000).map((e) => e.record), stored.slice(20));
  spool.removeThrough(Number.MAX_SAFE_INTEGER);
  await spool.close();
  spool = open(t, path);
  t.equal(spool.backlog(), 0);
  const next = await spool.append(aRecord({ n: 51 }));
  t.match(next, { seq: 51, prevHash: stored[49]!.hash }, 'an emptied spool still continues the chain');
});

t.test('bad records are refused one by one; their batch mates commit', async (t) => {
  const spool = open(t, join(tmp(t), 'spool.db'));
  await spool.append(aRecord({ n: 1 }));
  const results = await Promise.allSettled([
    spool.append(aRecord({ n: 2 })),
    spool.append(aRecord({ n: 1 })),
    spool.append(aRecord({ n: 3, replica: 'someone-else' })),
    spool.append(aRecord({ n: 4, durationMs: NaN })),
    spool.append(aRecord({ n: 5, time: 'yesterday' })),
    // What PostgreSQL would refuse when forwarding is refused here, before it is acknowledged.
    spool.append(aRecord({ n: 7, tekton: { taskRun: 7 } as unknown as { taskRun: string } })),
    spool.append(aRecord({ n: 8, id: 'nul\u0000id' })),
    spool.append(aRecord({ n: 6 })),
  ]);
  t.strictSame(
    results.map((r) => (r.status === 'fulfilled' ? r.value.seq : (r.reason as { code: string }).code)),
    [2, 'ERR_STORE_DUPLICATE_ID', 'ERR_STORE_INVALID_RECORD', 'ERR_STORE_INVALID_RECORD', 'ERR_STORE_INVALID_RECORD', 'ERR_STORE_INVALID_RECORD', 'ERR_STORE_INVALID_RECORD', 3],
  );
  t.ok(linked(spool.peek(100).map((e) => e.record)));
});

t.test('a full spool refuses appends with a message naming it, then takes them again once drained', async (t) => {
  const path = join(tmp(t), 'spool.db');
  const maxBytes = 256 * 1024;
  const spool = open(t, path, { maxBytes });
  let n = 0;
  let refused: unknown;
  while (!refused && n < 2000) {
    const batch = Array.from({ length: 20 }, () => aRecord({ n: ++n }));
    const results = await Promise.allSettled(batch.map((r) => spool.append(r)));
    refused = results.find((r) => r.status === 'rejected')?.reason;
    if (refused) t.ok(results.every((r) => r.status === 'rejected'), 'the batch that does not fit is refused whole');
  }
  t.match(refused, { code: 'ERR_STORE_UNAVAILABLE', message: `the decision spool ${path} is full` });
  t.match((refused as Error).message, new RegExp(`limit store\\.spool\\.maxBytes = ${maxBytes} bytes`));
  t.equal(spool.writable(), false, 'unready while full');
  const kept = spool.backlog();
  t.equal(kept, n - 20, 'nothing of the refused batch was kept');
  t.ok(spool.usedBytes() <= maxBytes);
  await t.rejects(spool.append(aRecord({ n: ++n })), { code: 'ERR_STORE_UNAVAILABLE' }, 'still full');

  spool.removeThrough(spool.peek(kept)[Math.floor(kept / 2)]!.pos);
  t.equal(spool.writable(), true, 'room again after forwarded records were removed');
  const after = await spool.append(aRecord({ n: ++n }));
  t.equal(after.seq, kept + 1, 'the chain continues where it stood');
});

t.test('a failed commit rejects, keeps nothing, and a probe brings the spool back', async (t) => {
  const path = join(tmp(t), 'spool.db');
  const spool = open(t, path);
  const first = await spool.append(aRecord({ n: 1 }));
  const other = new Database(path);
  other.exec('BEGIN EXCLUSIVE');
  const failed = await Promise.allSettled([2, 3].map((n) => spool.append(aRecord({ n }))));
  t.match(failed, [{ status: 'rejected', reason: { code: 'ERR_STORE_UNAVAILABLE', message: /could not commit 2 record\(s\): database is locked/ } }, { status: 'rejected' }]);
  t.equal(spool.writable(), false);
  other.exec('COMMIT');
  other.close();
  for (let i = 0; i < 100 && !spool.writable(); i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(spool.writable(), true, 'the probe found it writable');
  t.match(await spool.append(aRecord({ n: 4 })), { seq: 2, prevHash: first.hash });
});

t.test('head moves and re-chaining after the shared store\'s head', async (t) => {
  const spool = open(t, join(tmp(t), 'spool.db'));
  const shared = chainOf(Array.from({ length: 5 }, (_, i) => aRecord({ n: 100 + i })));
  const base = { seq: 5, hash: shared[4]!.hash };
  t.equal(spool.advanceHead(WRITER, { seq: 0, hash: GENESIS_HASH }), false, 'never backwards');
  t.equal(spool.advanceHead(WRITER, base), true, 'a fresh spool continues after the shared head');
  t.match(await spool.append(aRecord({ n: 1 })), { seq: 6, prevHash: base.hash });

  // A spool that started from a stale head: its records sit at positions the shared store holds.
  const stale = open(t, join(tmp(t), 'stale.db'));
  const spooled = await Promise.all([1, 2, 3].map((n) => stale.append(aRecord({ n }))));
  t.equal(stale.advanceHead(WRITER, base), false, 'not while records of that writer wait');
  t.equal(stale.rebase(WRITER, base), 3);
  const rebased = stale.peek(10).map((e) => e.record);
  t.strictSame(rebased.map((r) => r.id), spooled.map((r) => r.id), 'same records, same order');
  t.ok(linked(rebased, base), 're-chained after the base');
  t.strictSame(stale.head(), { seq: 8, hash: rebased[2]!.hash });
  t.match(await stale.append(aRecord({ n: 4 })), { seq: 9, prevHash: rebased[2]!.hash });
  t.equal(stale.rebase('other-writer', { seq: 0, hash: GENESIS_HASH }), 0, 'nothing of another writer');
});

t.test('a spooled row that is not JSON at all is quarantined by peek, kept as found, and forwarding goes on', async (t) => {
  const path = join(tmp(t), 'spool.db');
  const spool = open(t, path);
  const stored = await Promise.all([1, 2, 3].map((n) => spool.append(aRecord({ n }))));
  const db = new Database(path);
  t.equal(db.prepare("UPDATE pending SET body = 'garbage{' WHERE id = ?").run(idOf(2)).changes, 1);
  db.close();
  t.strictSame(spool.peek(10).map((e) => e.record), [stored[0], stored[2]], 'the readable ones are still forwarded');
  t.equal(spool.backlog(), 2);
  t.equal(spool.quarantinedCount(), 1);
  const [q] = spool.quarantined();
  t.match(q, { record: { id: idOf(2), replica: WRITER, seq: 2, hash: stored[1]!.hash }, body: 'garbage{', reason: /^unreadable in the spool \(its body is not JSON/ });
  t.strictSame(spool.peek(10).map((e) => e.pos), spool.peek(10).map((e) => e.pos), 'peek is stable once it is set aside');
});

t.test('opening fails with a clear code naming the spool', async (t) => {
  const dir = tmp(t);
  writeFileSync(join(dir, 'a-file'), 'x');
  writeFileSync(join(dir, 'junk.db'), 'this is not a database, just text that is long enough to be read as a header..........');
  const newer = join(dir, 'newer.db');
  const db = new Database(newer);
  db.pragma('user_version = 9');
  db.close();
  const cases: Array<[string, Partial<SpoolOptions>, { code: string; message?: RegExp }]> = [
    ['missing directory', { path: join(dir, 'nope', 's.db') }, { code: 'ERR_STORE_OPEN', message: /cannot open the decision spool .*nope\/s\.db: directory .*nope does not exist or is not writable/ }],
    ['parent is a file', { path: join(dir, 'a-file', 's.db') }, { code: 'ERR_STORE_OPEN', message: /a-file is not a directory/ }],
    ['not a database', { path: join(dir, 'junk.db') }, { code: 'ERR_STORE_OPEN', message: /junk\.db: file is not a database/ }],
    ['newer format', { path: newer }, { code: 'ERR_STORE_OPEN', message: /format version 9 is newer/ }],
    ['no limit', { path: join(dir, 's.db'), maxBytes: 0 }, { code: 'ERR_STORE_CONFIG', message: /store\.spool\.maxBytes must be a positive whole number/ }],
    ['no writer', { path: join(dir, 's.db'), replica: '' }, { code: 'ERR_STORE_CONFIG' }],
  ];
  for (const [title, opts, want] of cases) {
    t.throws(() => createSpool({ path: join(dir, 'x.db'), maxBytes: 1 << 20, replica: WRITER, ...opts }), want, title);
  }
});
