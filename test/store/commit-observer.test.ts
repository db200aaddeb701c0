/**
 * The stores' commit observer (port.ts CommitObserver), which feeds tzw_store_commit_duration_seconds
 * and tzw_store_commit_records: one call per writer-thread transaction, with its wall time (lock
 * wait and fsync included) and its records; a throwing observer never disturbs the appends.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { createSqliteStore, type SqliteStore, type SqliteStoreOptions } from '../../webhook/store/sqlite/store.js';
import { createSpool } from '../../webhook/store/postgres/spool.js';
import type { CommitObserver } from '../../webhook/store/port.js';
import { aRecord, WRITER } from './builders.js';
import { createTestSigner, holdSqliteWriteLock } from './setup.js';

const { signer } = await createTestSigner(t, 'tzw-commits-key-');

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'tzw-commits-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An observer that keeps what it is told. */
function recorder(): { observe: CommitObserver; commits: Array<{ seconds: number; records: number }> } {
  const commits: Array<{ seconds: number; records: number }> = [];
  return { observe: (c) => void commits.push(c), commits };
}

/** A logger that keeps its error lines. */
function errorLog(): { logger: { info(): void; warn(): void; error(obj: object, msg: string): void }; lines: string[] } {
  const lines: string[] = [];
  return { logger: { info: () => undefined, warn: () => undefined, error: (_obj, msg) => void lines.push(msg) }, lines };
}

async function openSqlite(t: Test, extra: Partial<SqliteStoreOptions>): Promise<{ store: SqliteStore; path: string }> {
  const path = join(tmp(t), 'decisions.db');
  const store = await createSqliteStore({ path, replica: WRITER, signer, ...extra });
  t.teardown(() => store.close());
  return { store, path };
}

t.test('SQLite: one observation per transaction; the records add up; concurrent appends share one', async (t) => {
  const seen = recorder();
  const { store } = await openSqlite(t, { onCommit: seen.observe });
  await Promise.all(Array.from({ length: 30 }, (_, i) => store.append(aRecord({ n: i + 1 }))));
  for (let i = 31; i <= 33; i++) await store.append(aRecord({ n: i }));
  const { commits, records } = store.stats();
  t.equal(seen.commits.length, commits, 'one observation per commit the store counted');
  t.equal(seen.commits.reduce((n, c) => n + c.records, 0), records, 'records per commit add up to the records appended');
  t.equal(records, 33);
  t.ok(seen.commits.some((c) => c.records > 1), 'appends made together were committed together (group commit)');
  t.strictSame(seen.commits.slice(-3).map((c) => c.records), [1, 1, 1], 'appends one at a time: one record each');
  t.ok(seen.commits.every((c) => c.seconds > 0 && c.seconds < 10), 'durations are positive seconds');
});

t.test('SQLite: a commit that waited for another process\'s lock reports the wait', async (t) => {
  const seen = recorder();
  const { store, path } = await openSqlite(t, { onCommit: seen.observe, busyTimeoutMs: 5000 });
  await store.append(aRecord({ n: 1 }));
  const release = await holdSqliteWriteLock(path);
  const appended = store.append(aRecord({ n: 2 }));
  await new Promise((r) => setTimeout(r, 300));
  await release();
  await appended;
  t.equal(seen.commits.length, 2);
  t.ok(seen.commits[1]!.seconds >= 0.25, `the second commit took the lock wait (${seen.commits[1]!.seconds.toFixed(3)} s)`);
  t.ok(seen.commits[0]!.seconds < seen.commits[1]!.seconds);
});

t.test('SQLite: a failed commit is not observed as one', async (t) => {
  const seen = recorder();
  const { store, path } = await openSqlite(t, { onCommit: seen.observe, busyTimeoutMs: 50, recoveryProbeMs: 20 });
  await store.append(aRecord({ n: 1 }));
  const release = await holdSqliteWriteLock(path);
  await t.rejects(store.append(aRecord({ n: 2 })), { code: 'ERR_STORE_UNAVAILABLE' });
  await release();
  t.equal(seen.commits.length, 1, 'only the commit that happened');
  t.equal(store.stats().failedCommits, 1);
});

t.test('SQLite: an observer that throws is logged once and the appends go on', async (t) => {
  const log = errorLog();
  let calls = 0;
  const { store } = await openSqlite(t, {
    logger: log.logger,
    onCommit: () => {
      calls++;
      throw new Error('observer broke');
    },
  });
  const stored = [];
  for (let i = 1; i <= 3; i++) stored.push(await store.append(aRecord({ n: i })));
  t.strictSame(stored.map((r) => r.seq), [1, 2, 3], 'every append committed and answered');
  t.equal(calls, 1, 'not called again after it threw');
  t.strictSame(log.lines, ['the store commit observer threw; commits are no longer observed']);
});

t.test('spool (PostgreSQL store): one observation per spool transaction', async (t) => {
  const seen = recorder();
  const spool = createSpool({ path: join(tmp(t), 'spool.db'), maxBytes: 64 * 1024 * 1024, replica: WRITER, onCommit: seen.observe });
  t.teardown(() => spool.close());
  await Promise.all(Array.from({ length: 20 }, (_, i) => spool.append(aRecord({ n: i + 1 }))));
  await spool.append(aRecord({ n: 21 }));
  t.equal(seen.commits.reduce((n, c) => n + c.records, 0), 21, 'records per commit add up');
  t.ok(seen.commits.some((c) => c.records > 1), 'appends made together share a transaction');
  t.equal(seen.commits.at(-1)!.records, 1);
  t.ok(seen.commits.every((c) => c.seconds > 0 && c.seconds < 10));
});
